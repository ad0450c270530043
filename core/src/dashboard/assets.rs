// TEMPORARY stand-in until the dashboard branch lands (replaced by the real pages).
pub const APP_CSS: &str = "";
pub const APP_JS: &str = "";
