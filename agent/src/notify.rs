//! systemd's readiness protocol (`sd_notify`, `Type=notify`): `vmctx-local.service` says it is
//! ready once what the boot waits for is in place (links, manager files, hostname, SSH host
//! keys), so networkd and sshd start while the rest of the local stage (users, disk growth)
//! goes on. Without `$NOTIFY_SOCKET` (a shell, a test, a oneshot unit) nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Whether systemd waits for a readiness message (the unit is `Type=notify`).
pub fn expected() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `READY=1` with a status line. Sending it twice is harmless: systemd keeps the first.
pub fn ready(status: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        // A lost notification costs only the wait: the unit is still done when vmctx exits.
        if let Err(e) = send(
            &socket.to_string_lossy(),
            &format!("READY=1\nSTATUS={status}\n"),
        ) {
            eprintln!("vmctx: telling systemd it is ready: {e}");
        }
    }
}

/// One datagram to the socket systemd named: a path, or `@name` in the abstract namespace.
fn send(socket: &str, message: &str) -> io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::other("short write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_or_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\nSTATUS=x\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("vmctx-notify-test-{}", std::process::id());
        let abs = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&abs).unwrap();
        send(&format!("@{name}"), "READY=1\n").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        assert!(send(dir.path().join("none").to_str().unwrap(), "READY=1\n").is_err());
    }
}
