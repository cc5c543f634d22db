//! The physical floor of a remote pair: one raw TCP round trip between two processes on
//! loopback (this binary's `echo` subcommand is the other process).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

/// About the size of the acquire message a pair sends.
const MESSAGE: usize = 64;

/// The `echo` subcommand: accepts one connection on a free loopback port (printed on
/// stdout) and sends back every byte until the peer hangs up.
pub fn serve_echo() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let (mut conn, _) = listener.accept()?;
    conn.set_nodelay(true)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}

/// A connection to an `echo` child process; the child ends when this drops.
pub struct Echo {
    child: Child,
    conn: TcpStream,
    buf: [u8; MESSAGE],
}

impl Echo {
    pub fn start() -> std::io::Result<Echo> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("echo")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other(format!("echo child printed {line:?}")))?;
        let conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_nodelay(true)?;
        Ok(Echo {
            child,
            conn,
            buf: [7; MESSAGE],
        })
    }

    /// One round trip: a message out, the same back.
    pub fn round_trip(&mut self) {
        self.conn.write_all(&self.buf).expect("echo write");
        self.conn.read_exact(&mut self.buf).expect("echo read");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}
