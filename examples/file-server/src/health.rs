//! `secure-file-server healthcheck`: asks the server's `/healthz` whether it answers, for a container's
//! `HEALTHCHECK` (an image from `scratch` has no `curl`). Exit 0 when the answer is `200`.
//!
//! The settings are the server's, layered the same way (the config file included), so a server that takes its
//! address from the config file is asked, not skipped; nothing else is loaded (no key read, no JWKS fetched on
//! every probe). It speaks plain HTTP: a server with TLS (HTTPS, with mutual TLS or bearer tokens) cannot be
//! asked, and the check fails, saying so, rather than reporting a health it did not see.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use secure_tools::serve::ServerArgs;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the server `settings` describe.
pub fn check(settings: &ServerArgs) -> Result<(), String> {
    // Over stdio the server has no address to ask; it is healthy while it runs.
    let Some(bind) = settings.http else {
        return Ok(());
    };
    if settings.tls_cert.is_some() || settings.client_ca.is_some() {
        let how = if settings.mtls_clients.is_some() {
            "HTTPS to clients with certificates (mutual TLS)"
        } else {
            "HTTPS (TLS)"
        };
        return Err(format!(
            "the server at {bind} serves {how}, which this check cannot ask (it speaks plain HTTP): ask \
             https://HOST:{port}/healthz yourself (with a client certificate of its CA if it requires one), or \
             watch the process instead",
            port = bind.port()
        ));
    }
    ask(bind)
}

/// Asks the server listening at `bind` (an unspecified address is reached on loopback).
fn ask(mut address: SocketAddr) -> Result<(), String> {
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
    let read = stream.read(&mut head).map_err(|e| match e.kind() {
        // A read timeout is `WouldBlock` (EAGAIN) on Unix, `TimedOut` elsewhere.
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer from {address} within {TIMEOUT:?}")
        }
        _ => format!("no answer from {address}: {e}"),
    })?;
    let status = String::from_utf8_lossy(&head[..read]);
    let status = status.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("{address} answered `{}`", status.escape_debug()))
    }
}
