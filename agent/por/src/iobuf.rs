//! Buffers for reads and writes past the page cache (`O_DIRECT`): zeroed,
//! aligned to a page, and backed by 2 MiB pages where the kernel allows.
//!
//! Why the large pages: an `O_DIRECT` call pins every page of its buffer
//! and hands the disk one segment a page. With 4 KiB pages a 32 MiB write
//! spends a third of its time on that: on a virtio disk it ran at
//! 2.1–2.2 GB/s from 4 KiB pages and 2.9–4.1 GB/s from 2 MiB pages, the
//! same calls to the same fresh file (`docs/benchmarks.md`).
//!
//! The memory is its own anonymous mapping, so that no page of it has
//! been touched before the kernel is asked for large pages (memory from
//! the allocator may have been). Where the kernel does not give large
//! pages (`transparent_hugepage` off), the buffer is on small pages and
//! works the same.

// The mapping is made and freed by hand, so this module, and only this
// one in the crate, uses `unsafe`. Each block says why it is sound.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

use crate::PorError;

/// The large page size asked for.
pub const HUGE_PAGE: usize = 2 << 20;

/// `len` bytes at a 2 MiB boundary in a mapping of their own.
#[derive(Debug)]
pub struct IoBuf {
    map: NonNull<u8>,
    map_len: usize,
    start: usize,
    len: usize,
}

// SAFETY: an `IoBuf` owns its mapping alone, as a `Vec` owns its memory;
// nothing else holds the pointer, so moving it to another thread is sound.
unsafe impl Send for IoBuf {}

impl IoBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Result<IoBuf, PorError> {
        let failed = |e: rustix::io::Errno| {
            PorError::Io(format!("allocating a {len}-byte buffer for disk I/O: {e}"))
        };
        // Whole large pages, and room to move the start to a 2 MiB
        // boundary (pages never touched cost no memory). A length too
        // large for that is refused here, before any slice of it is made.
        let (whole, map_len) = len
            .max(1)
            .checked_next_multiple_of(HUGE_PAGE)
            .and_then(|whole| Some((whole, whole.checked_add(HUGE_PAGE)?)))
            .filter(|&(_, map_len)| map_len <= isize::MAX as usize)
            .ok_or_else(|| failed(rustix::io::Errno::NOMEM))?;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks; it overlaps nothing, and the kernel zeroes it.
        let at = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .map_err(failed)?;
        let map = NonNull::new(at.cast::<u8>()).ok_or_else(|| failed(rustix::io::Errno::NOMEM))?;
        let start = map.as_ptr().align_offset(HUGE_PAGE);
        // SAFETY: [start, start + whole) lies inside the mapping just made
        // (start < HUGE_PAGE); the advice changes how it is paged, not what
        // it holds. A kernel that refuses it leaves small pages.
        let _ =
            unsafe { mm::madvise(map.as_ptr().add(start).cast(), whole, Advice::LinuxHugepage) };
        Ok(IoBuf {
            map,
            map_len,
            start,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: [start, start + len) is inside the mapping, readable,
        // initialised (zeroed by the kernel), and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(self.start), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only
        // reference to the memory.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(self.start), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`, unmapped once; no slice
        // of it outlives `self`.
        let _ = unsafe { mm::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_zeroed_aligned_and_holds_what_is_written() {
        for len in [0, 1, 4096, 256 << 10, HUGE_PAGE, HUGE_PAGE + 4096, 5 << 20] {
            let mut b = IoBuf::new(len).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.is_empty(), len == 0);
            assert_eq!(b.as_slice().as_ptr() as usize % HUGE_PAGE, 0, "{len}");
            assert!(b.as_slice().iter().all(|&x| x == 0), "{len} not zeroed");
            for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
                *x = (i % 251) as u8;
            }
            assert!(b
                .as_slice()
                .iter()
                .enumerate()
                .all(|(i, &x)| x == (i % 251) as u8));
        }
    }

    #[test]
    fn a_length_past_the_address_space_is_refused() {
        for len in [usize::MAX, usize::MAX - HUGE_PAGE, isize::MAX as usize] {
            let e = IoBuf::new(len).unwrap_err();
            assert!(e.to_string().contains("allocating a"), "{e}");
        }
    }

    #[test]
    fn a_buffer_moves_to_another_thread() {
        let mut b = IoBuf::new(3 << 20).unwrap();
        b.as_mut_slice()[3 << 19] = 7;
        let sum =
            std::thread::spawn(move || b.as_slice().iter().map(|&x| u64::from(x)).sum::<u64>())
                .join()
                .unwrap();
        assert_eq!(sum, 7);
    }
}
