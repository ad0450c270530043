//! The dashboard's stylesheet and script, compiled in (served at `/static/app.css` and
//! `/static/app.js`).

/// The stylesheet (`text/css`).
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The script (`text/javascript`): live updates and local times; the pages work without it.
pub const APP_JS: &str = include_str!("assets/app.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_self_contained() {
        for a in [APP_CSS, APP_JS] {
            assert!(!a.contains("http://") && !a.contains("https://") && !a.contains("@import"));
        }
        assert!(
            APP_CSS.contains("prefers-color-scheme: dark") && APP_CSS.contains("max-width: 640px")
        );
        assert!(
            APP_JS.contains("new EventSource('/events'") && APP_JS.contains("X-Inloop-Fragment")
        );
        assert!(!APP_JS.contains("eval(") && !APP_JS.contains("innerHTML"));
        assert!(APP_JS.lines().count() < 150, "{}", APP_JS.lines().count());
    }
}
