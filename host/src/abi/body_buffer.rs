//! A body as a list of the chunks it arrived in — what Envoy's `Buffer::OwnedImpl` is to a
//! filter that buffers (a chain of slices, never one contiguous copy).
//!
//! Why: a body passes the filter chain chunk by chunk, and a filter that buffers
//! (StopIterationAndBuffer) makes the host hold all of it until the filter lets go. Kept as one
//! growing `Vec`, every byte was copied once into it, once more per doubling, and once out of
//! the socket's shared buffer before that (bench/PROFILE.md, 1 MiB POSTs). As chunks, the bytes
//! hyper read are the bytes that go upstream; only a plugin's read copies (the range it asks
//! for, straight into guest memory) and only its write allocates.

use bytes::Bytes;

/// A body, or the part of it one filter holds, as chunks in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyBuffer {
    chunks: Vec<Bytes>,
    len: usize,
}

impl BodyBuffer {
    /// One chunk (none if it is empty).
    pub(crate) fn from_chunk(chunk: Bytes) -> Self {
        let mut b = Self::default();
        b.push(chunk);
        b
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when no bytes are held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a chunk (an empty one is dropped).
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Appends everything `other` holds, moving its chunks.
    pub(crate) fn append(&mut self, other: BodyBuffer) {
        if self.chunks.is_empty() {
            *self = other;
            return;
        }
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    /// The chunks, in order, to send on.
    pub(crate) fn into_chunks(self) -> impl Iterator<Item = Bytes> {
        self.chunks.into_iter()
    }

    /// Copies the bytes from `start` into `out` (exactly `out.len()` of them). False, with
    /// `out` untouched, when the buffer does not hold that range.
    pub(crate) fn copy_range(&self, start: usize, out: &mut [u8]) -> bool {
        match start.checked_add(out.len()) {
            Some(end) if end <= self.len => {}
            _ => return false,
        }
        let mut skip = start;
        let mut written = 0;
        for chunk in &self.chunks {
            if written == out.len() {
                break;
            }
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let part = &chunk[skip..];
            let n = part.len().min(out.len() - written);
            out[written..written + n].copy_from_slice(&part[..n]);
            written += n;
            skip = 0;
        }
        written == out.len()
    }

    /// All bytes as one `Vec`.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out
    }

    /// Envoy's `Buffer::copyFrom` on a live body, restricted to what every Envoy accepts:
    /// prepend (start 0, size 0), replace everything (start 0, size ≥ length) or append
    /// (start ≥ length). False for any other edit (BAD_ARGUMENT), with the buffer unchanged.
    pub(crate) fn edit(&mut self, start: usize, size: usize, data: &[u8]) -> bool {
        let data = Bytes::copy_from_slice(data);
        if start == 0 && size == 0 {
            if !data.is_empty() {
                self.len += data.len();
                self.chunks.insert(0, data);
            }
        } else if start == 0 && size >= self.len {
            *self = Self::from_chunk(data);
        } else if start >= self.len {
            self.push(data);
        } else {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::BodyBuffer;
    use bytes::Bytes;

    fn of(parts: &[&'static str]) -> BodyBuffer {
        let mut b = BodyBuffer::default();
        for p in parts {
            b.push(Bytes::from_static(p.as_bytes()));
        }
        b
    }

    #[test]
    fn any_range_reads_across_chunk_borders_like_one_contiguous_body() {
        let b = of(&["ab", "", "cde", "f", "ghij"]);
        let whole = b"abcdefghij";
        assert_eq!(b.len(), whole.len());
        assert_eq!(b.to_vec(), whole);
        for start in 0..=whole.len() {
            for end in start..=whole.len() {
                let mut out = vec![0u8; end - start];
                assert!(b.copy_range(start, &mut out), "{start}..{end}");
                assert_eq!(out, &whole[start..end], "{start}..{end}");
            }
        }
        let mut out = [7u8; 3];
        assert!(!b.copy_range(8, &mut out), "past the end");
        assert_eq!(out, [7; 3], "untouched");
        assert!(!b.copy_range(usize::MAX, &mut out), "overflowing start");
    }

    #[test]
    fn edits_follow_what_every_envoy_accepts() {
        let mut b = of(&["wor", "ld"]);
        assert!(b.edit(0, 0, b"hello "));
        assert_eq!(b.to_vec(), b"hello world");
        assert!(b.edit(100, 0, b"!"));
        assert_eq!(b.to_vec(), b"hello world!");
        assert!(b.edit(12, 3, b"?"));
        assert_eq!(b.to_vec(), b"hello world!?");
        assert!(b.edit(0, usize::MAX, b"new"));
        assert_eq!(b.to_vec(), b"new");
        // Neither a middle replacement nor a partial prefix one.
        assert!(!b.edit(1, 1, b"E"));
        assert!(!b.edit(0, 1, b"N"));
        assert_eq!(b.to_vec(), b"new");
        assert!(b.edit(0, 3, b""));
        assert!(b.is_empty());
    }

    #[test]
    fn appending_moves_chunks_and_counts_them() {
        let mut a = of(&["ab"]);
        a.append(of(&["c", "de"]));
        a.append(BodyBuffer::default());
        assert_eq!(a.len(), 5);
        let chunks: Vec<Bytes> = a.into_chunks().collect();
        assert_eq!(chunks.len(), 3);
        let mut empty = BodyBuffer::default();
        empty.append(of(&["x"]));
        assert_eq!(empty.to_vec(), b"x");
    }
}
