//! Device memory: every allocation in its own address window, every access checked
//! against the allocation it falls in.

/// log2 of the size of one allocation's address window.
pub(super) const WINDOW_SHIFT: u32 = 36;
/// Generic address of shared offset 0.
pub const SHARED_WINDOW: u64 = 1 << 62;

/// One device allocation.
#[derive(Debug, Clone)]
pub(super) struct Alloc {
    name: String,
    data: Vec<u8>,
}

/// Device memory: allocations in separate address windows.
#[derive(Debug, Clone, Default)]
pub struct DeviceMemory {
    allocs: Vec<Alloc>,
}

impl DeviceMemory {
    /// Allocates `bytes` (named for error messages) and returns its device address.
    pub fn alloc(&mut self, name: &str, bytes: Vec<u8>) -> u64 {
        self.allocs.push(Alloc {
            name: name.to_string(),
            data: bytes,
        });
        (self.allocs.len() as u64) << WINDOW_SHIFT
    }

    /// Allocates and fills from `values` (little-endian, as on the GPU).
    pub fn alloc_f32(&mut self, name: &str, values: &[f32]) -> u64 {
        self.alloc(name, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Allocates and fills from `values`.
    pub fn alloc_u32(&mut self, name: &str, values: &[u32]) -> u64 {
        self.alloc(name, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// The allocation at `addr` and the byte offset into it, if `addr..addr+len` lies
    /// inside one allocation.
    pub(super) fn locate(&self, addr: u64, len: u64) -> Option<(usize, usize)> {
        let window = (addr >> WINDOW_SHIFT) as usize;
        let a = self.allocs.get(window.checked_sub(1)?)?;
        let off = addr & ((1 << WINDOW_SHIFT) - 1);
        (off + len <= a.data.len() as u64).then_some((window - 1, off as usize))
    }

    /// Bytes `addr..addr+len`.
    pub fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (i, off) = self.locate(addr, len as u64)?;
        Some(&self.allocs[i].data[off..off + len])
    }

    /// `n` f32 values at `addr`.
    pub fn read_f32(&self, addr: u64, n: usize) -> Option<Vec<f32>> {
        let b = self.read(addr, 4 * n)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// The name and size of the allocation whose window holds `addr`, for messages.
    pub(super) fn describe(&self, addr: u64) -> String {
        let window = (addr >> WINDOW_SHIFT) as usize;
        match window.checked_sub(1).and_then(|w| self.allocs.get(w)) {
            Some(a) => format!(
                "byte offset {} of `{}` ({} bytes)",
                addr & ((1 << WINDOW_SHIFT) - 1),
                a.name,
                a.data.len()
            ),
            None => "no allocation".into(),
        }
    }

    pub(super) fn load(&self, addr: u64, size: u8) -> Result<u64, String> {
        match self.locate(addr, u64::from(size)) {
            Some((i, off)) => Ok(read_le(&self.allocs[i].data[off..off + size as usize])),
            None => Err(format!(
                "out-of-bounds global read of {size} bytes: {}",
                self.describe(addr)
            )),
        }
    }

    pub(super) fn store(&mut self, addr: u64, size: u8, v: u64) -> Result<(), String> {
        match self.locate(addr, u64::from(size)) {
            Some((i, off)) => {
                write_le(&mut self.allocs[i].data[off..off + size as usize], v);
                Ok(())
            }
            None => Err(format!(
                "out-of-bounds global write of {size} bytes: {}",
                self.describe(addr)
            )),
        }
    }
}

pub(super) fn read_le(b: &[u8]) -> u64 {
    match b.len() {
        4 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        8 => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        _ => b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x)),
    }
}

pub(super) fn write_le(b: &mut [u8], v: u64) {
    let bytes = v.to_le_bytes();
    let n = b.len();
    b.copy_from_slice(&bytes[..n]);
}
