//! `secure-file-server healthcheck`: asks the server's `/healthz` whether it answers, for a container's
//! `HEALTHCHECK` (an image from `scratch` has no `curl`). Exit 0 when the answer is `200`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the server listening at `bind` (an unspecified address is reached on loopback).
pub fn check(mut address: SocketAddr) -> Result<(), String> {
    if address.ip().is_unspecified() {
        address.set_ip(if address.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).ok();
    stream.set_write_timeout(Some(TIMEOUT)).ok();
    let host = if address.is_ipv4() {
        "127.0.0.1"
    } else {
        "[::1]"
    };
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        secure_tools::serve::http::HEALTH_PATH
    )
    .map_err(|e| format!("cannot ask {address}: {e}"))?;
    let mut head = [0u8; 64];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let status = String::from_utf8_lossy(&head[..read]);
    let status = status.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("{address} answered `{}`", status.escape_debug()))
    }
}
