//! A hostile LDAP server on loopback, speaking just enough LDAP (binds,
//! searches) to answer every search with an endless stream of large entries:
//! what a broken or malicious directory can do to the host that reads it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server: its URL and how many bytes of entries it has sent.
pub struct LdapFlood {
    /// `ldap://127.0.0.1:PORT`.
    pub url: String,
    sent: Arc<AtomicU64>,
}

/// BER length octets.
fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

/// A BER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length(content.len()));
    out.extend_from_slice(content);
    out
}

/// An LDAPMessage with `id` around the encoded protocol operation `op`.
fn message(id: u8, op: &[u8]) -> Vec<u8> {
    let mut content = tlv(0x02, &[id]);
    content.extend_from_slice(op);
    tlv(0x30, &content)
}

/// Read one LDAPMessage: its message id and protocol-op tag.
fn read_message(stream: &mut TcpStream) -> Option<(u8, u8)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = if head[1] & 0x80 == 0 {
        usize::from(head[1])
    } else {
        let mut bytes = vec![0u8; usize::from(head[1] & 0x7f)];
        stream.read_exact(&mut bytes).ok()?;
        bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    // INTEGER messageID (its last byte is enough here), then the op's tag.
    let id_len = usize::from(*body.get(1)?);
    (body.first() == Some(&0x02)).then(|| (body[1 + id_len], body[2 + id_len]))
}

fn serve(mut stream: TcpStream, sent: &AtomicU64) {
    // An entry of 64 KiB: dn, one attribute with one value.
    let value = vec![b'v'; 64 * 1024];
    let attribute = tlv(0x30, &[tlv(0x04, b"description"), tlv(0x31, &tlv(0x04, &value))].concat());
    let entry_op = tlv(0x64, &[tlv(0x04, b"uid=flood,dc=flood"), tlv(0x30, &attribute)].concat());
    while let Some((id, op)) = read_message(&mut stream) {
        match op {
            // BindRequest: success.
            0x60 => {
                let done = tlv(0x61, &[tlv(0x0a, &[0]), tlv(0x04, b""), tlv(0x04, b"")].concat());
                if stream.write_all(&message(id, &done)).is_err() {
                    return;
                }
            }
            // SearchRequest: entries until the client goes away (or 8 GiB).
            0x63 => {
                let entry = message(id, &entry_op);
                while sent.load(Ordering::Relaxed) < 8 << 30 {
                    if stream.write_all(&entry).is_err() {
                        return;
                    }
                    sent.fetch_add(entry.len() as u64, Ordering::Relaxed);
                }
                return;
            }
            // UnbindRequest, or anything else: hang up.
            _ => return,
        }
    }
}

impl LdapFlood {
    /// Start the server on a free port, for the life of the test process.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("ldap://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || serve(stream, &counter));
            }
        });
        Self { url, sent }
    }

    /// Bytes of entries sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
