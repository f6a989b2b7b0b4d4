//! The canonical byte encoding under every signature.
//!
//! A signed message is its domain tag followed by its fields in a fixed order.
//! Every variable-length item carries its length, every number has a fixed
//! width and byte order, so no two different messages share an encoding and
//! a signature made for one kind of message never verifies as another.

/// Bumped only if the encoding rules themselves change; each message kind
/// also carries its own version in its domain tag.
pub const ENCODING_VERSION: u8 = 1;

/// Builds canonical bytes field by field.
#[derive(Debug, Default)]
pub struct CanonicalWriter {
    bytes: Vec<u8>,
}

impl CanonicalWriter {
    /// Starts a message with its domain tag: one length byte, then ASCII.
    pub fn new(domain: &str) -> Self {
        let mut writer = Self { bytes: Vec::with_capacity(256) };
        let tag = domain.as_bytes();
        debug_assert!(tag.len() <= u8::MAX as usize && domain.is_ascii());
        writer.bytes.push(tag.len() as u8);
        writer.bytes.extend_from_slice(tag);
        writer
    }

    /// A UTF-8 string: u32 big-endian byte length, then the bytes.
    pub fn str(mut self, value: &str) -> Self {
        self.put_len_prefixed(value.as_bytes());
        self
    }

    /// Opaque bytes: u32 big-endian length, then the bytes.
    pub fn bytes(mut self, value: &[u8]) -> Self {
        self.put_len_prefixed(value);
        self
    }

    pub fn u8(mut self, value: u8) -> Self {
        self.bytes.push(value);
        self
    }

    pub fn u16(mut self, value: u16) -> Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u64(mut self, value: u64) -> Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn i64(mut self, value: i64) -> Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// An optional byte: 0x00 when absent, 0x01 followed by the value.
    pub fn opt_u8(self, value: Option<u8>) -> Self {
        match value {
            None => self.u8(0),
            Some(v) => self.u8(1).u8(v),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    fn put_len_prefixed(&mut self, value: &[u8]) {
        let len = u32::try_from(value.len()).expect("field longer than 4 GiB");
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_keep_adjacent_strings_apart() {
        let a = CanonicalWriter::new("t").str("ab").str("c").finish();
        let b = CanonicalWriter::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn encodes_each_type_with_fixed_width() {
        let bytes = CanonicalWriter::new("x")
            .u8(7)
            .u16(978)
            .u64(1)
            .i64(-1)
            .opt_u8(None)
            .opt_u8(Some(42))
            .bytes(&[0xaa])
            .finish();
        assert_eq!(
            hex::encode(bytes),
            "0178\
             07\
             03d2\
             0000000000000001\
             ffffffffffffffff\
             00\
             012a\
             00000001aa"
        );
    }
}
