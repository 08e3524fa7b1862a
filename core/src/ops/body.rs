//! A request body read with a cap, chunk by chunk: the reader stops at the first chunk
//! past the cap, whatever `Content-Length` says and whether or not the body is chunked, so
//! a client cannot make the edge hold more than the cap (the admin API's 16 KiB).

/// Most bytes of an admin API write's body (commands, overrides).
pub const MAX_ADMIN_BODY: usize = 16 * 1024;

/// Over the cap: answer 413, read no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// A body being read, up to `max` bytes.
#[derive(Debug, Clone)]
pub struct CappedBody {
    max: usize,
    bytes: Vec<u8>,
}

impl CappedBody {
    /// A body of at most `max` bytes, refused at once when its declared `Content-Length`
    /// is larger (an unreadable one is ignored: the chunks are counted anyway).
    pub fn new(max: usize, content_length: Option<&str>) -> Result<Self, TooLarge> {
        let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(TooLarge);
        }
        Ok(Self {
            max,
            bytes: Vec::new(),
        })
    }

    /// Takes the next chunk; past the cap, the caller stops reading.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.bytes.len() + chunk.len() > self.max {
            return Err(TooLarge);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The body as text (invalid UTF-8 replaced, as `Request.text()` does).
    pub fn into_text(self) -> String {
        match String::from_utf8(self.bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_up_to_its_cap_and_no_further() {
        for (declared, chunks, expected) in [
            (None, &[&b"{}"[..]][..], Ok("{}".to_owned())),
            (Some("2"), &[&b"{"[..], &b"}"[..]][..], Ok("{}".to_owned())),
            (
                None,
                &[&[b'x'; 16][..], &[b'x'; 16][..]][..],
                Ok("x".repeat(32)),
            ),
            (None, &[&[b'x'; 16][..], &[b'x'; 17][..]][..], Err(TooLarge)),
            (None, &[&[b'x'; 33][..]][..], Err(TooLarge)),
            (Some("33"), &[][..], Err(TooLarge)),
            (Some("not a number"), &[&b"ok"[..]][..], Ok("ok".to_owned())),
            (None, &[&[0xff, b'a'][..]][..], Ok("\u{fffd}a".to_owned())),
        ] {
            let read = CappedBody::new(32, declared).and_then(|mut body| {
                for chunk in chunks {
                    body.push(chunk)?;
                }
                Ok(body.into_text())
            });
            assert_eq!(read, expected, "{declared:?} {chunks:?}");
        }
    }

    #[test]
    fn the_reader_stops_at_the_first_chunk_past_the_cap() {
        // 64 KiB in 1 KiB chunks against the admin cap: the 17th chunk is refused, and the
        // 47 after it are never asked for.
        let mut body = CappedBody::new(MAX_ADMIN_BODY, None).unwrap();
        let chunk = [b'a'; 1024];
        let taken = (0..64).take_while(|_| body.push(&chunk).is_ok()).count();
        assert_eq!(taken, 16);
    }
}
