//! `inloop mcp` as a process: the Rust binary runs the Python server with a Python that
//! cannot import it and must say how to install it (the working path, listing the tools over
//! stdio with the MCP SDK's own client, is python/tests/test_mcp.py).

use std::process::Command;

/// A real Python without site-packages (`-I -S`), so that `inloop` cannot be imported.
fn bare_python(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("python-without-site");
    std::fs::write(&path, "#!/bin/sh\nexec python3 -I -S \"$@\"\n").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

#[cfg(unix)]
#[test]
fn mcp_without_the_python_package_says_how_to_install_it() {
    let dir = std::env::temp_dir().join(format!("inloop-cli-mcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let python = bare_python(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(["mcp", "--transport", "stdio"])
        .env("INLOOP_PYTHON", &python)
        .current_dir(&dir)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.starts_with("error [mcp_unavailable]: "), "{err}");
    assert!(err.contains("No module named 'inloop'"), "{err}");
    assert!(
        err.contains("hint: install it into that Python with `pip install 'inloop[mcp]'`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mcp_with_a_missing_python_fails_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .arg("mcp")
        .env("INLOOP_PYTHON", "/nonexistent/inloop-test/python3")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error [mcp_unavailable]"), "{err}");
    assert!(err.contains("could not be started"), "{err}");
}
