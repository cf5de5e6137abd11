//! Random quoted-printable bodies through both decoders: the patched one must
//! give the same bytes, the same end offset and leave the stream at the same
//! position for every input and boundary. Inputs are drawn from the bytes the
//! decoder treats specially (`=`, `-`, CR, LF, whitespace, hex digits) and
//! pieces that combine them (soft breaks, `--`, escapes, UTF-8).

fn main() {
    let alphabet: &[u8] = b"ab=- \t\r\n0F3D\x0cz_?<>\"";
    let pieces: &[&[u8]] = &[
        b"\xc3\xa9",
        b"--",
        b"=\r\n",
        b"=3D",
        b"--b",
        b"font-size",
        b"  ",
        b"-a",
    ];
    let boundaries: &[&[u8]] = &[b"", b"b", b"ab", b"-a", b"-", b"a-b"];
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000_000);
    let mut state: u64 = 0x243F_6A88_85A3_08D3;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..count {
        let mut input = Vec::new();
        for _ in 0..next() % 60 {
            let r = next();
            if r % 5 == 0 {
                input.extend_from_slice(pieces[(r / 5 % pieces.len() as u64) as usize]);
            } else {
                input.push(alphabet[(r / 5 % alphabet.len() as u64) as usize]);
            }
        }
        for b in boundaries {
            let mut o = original::parsers::MessageStream::new(&input);
            let mut p = patched::parsers::MessageStream::new(&input);
            let (want, got) = (
                o.decode_quoted_printable_mime(b),
                p.decode_quoted_printable_mime(b),
            );
            if want != got || o.offset() != p.offset() {
                eprintln!(
                    "input #{i} {:?}, boundary {:?}: original {want:?} at {}, patched {got:?} at {}",
                    String::from_utf8_lossy(&input),
                    String::from_utf8_lossy(b),
                    o.offset(),
                    p.offset()
                );
                std::process::exit(1);
            }
        }
    }
    println!(
        "{count} inputs x {} boundaries: same output, end offset and stream position",
        boundaries.len()
    );
}
