//! The dashboard's stylesheet and script, compiled in (served at `/static/app.css` and
//! `/static/app.js`).

/// The stylesheet (`text/css`).
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The script (`text/javascript`): live updates and local times; the pages work without it.
pub const APP_JS: &str = include_str!("assets/app.js");
