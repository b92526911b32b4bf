//! Port relays: a published port reaches a server inside whether it binds
//! loopback or every address.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};

/// Accepts on every address at `listen` and connects each client to the
/// port `target` on the container's loopback.
pub fn relay(listen: u16, target: u16) {
    let listener = match TcpListener::bind(("0.0.0.0", listen)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("devinst-agent: cannot relay port {listen} to {target}: {err}");
            return;
        }
    };
    for client in listener.incoming().flatten() {
        std::thread::spawn(move || connect(client, target));
    }
}

/// Joins `client` to the server at `target`, IPv4 loopback first. When no
/// server listens, the client's connection is closed.
fn connect(client: TcpStream, target: u16) {
    let server =
        TcpStream::connect(("127.0.0.1", target)).or_else(|_| TcpStream::connect(("::1", target)));
    let Ok(server) = server else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || pipe(client2, server2));
    let _ = pipe(server, client);
    let _ = upstream.join();
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing half.
fn pipe(mut from: TcpStream, to: TcpStream) -> io::Result<u64> {
    let copied = io::copy(&mut from, &mut &to);
    let _ = to.shutdown(Shutdown::Write);
    if copied.is_err() {
        let _ = from.shutdown(Shutdown::Both);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_loopback_server_answers_through_the_relay() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap().port();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = front.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in front.incoming().flatten() {
                std::thread::spawn(move || connect(client, target));
            }
        });
        std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut request = Vec::new();
            conn.read_to_end(&mut request).unwrap();
            conn.write_all(&request.repeat(2)).unwrap();
        });
        let mut client = TcpStream::connect(("127.0.0.1", listen)).unwrap();
        client.write_all(b"ping").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "pingping", "half-close travels both ways");
    }
}
