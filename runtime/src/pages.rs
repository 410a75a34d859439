//! Large input buffers on transparent huge pages.
//!
//! A pass over a `[8192, 32000]` row of logits touches 32 pages of 4 KiB each: every one is a
//! TLB miss and a restart of the hardware prefetcher. The large inputs the runtime holds
//! (loaded from `.npz`, or drawn for `--size`) ask Linux for 2 MiB pages instead
//! (`madvise(MADV_HUGEPAGE)`, which the default `madvise` setting of
//! `/sys/kernel/mm/transparent_hugepage/enabled` honours). NumPy does the same for its large
//! arrays, so a peer reading NumPy inputs has them too. Elsewhere, or when the kernel declines,
//! the buffer is an ordinary one.
//!
//! The workspace (where gradients go) keeps ordinary pages but is written once, in order,
//! when it is made ([`zeros`]), not left to `calloc` to fault in during the first run. Measured
//! with `lossc bench cross_entropy` on the peers' inputs (2 threads, alternating, 10:20 UTC
//! 2026-12-07): inputs on huge pages and the workspace written at once 170–171 ms a run, a
//! 3.5 s process; the workspace from `calloc` instead 206–218 ms; both on huge pages 168–169
//! ms but a 6.5–8.6 s process, the kernel compacting memory to fault a gigabyte of huge pages
//! in at once (`defrag` is `madvise` by default); neither 197–198 ms.

/// Buffers of at least this many bytes ask for huge pages: a few of them, so most of the
/// buffer lies in whole 2 MiB pages.
pub const LARGE: usize = 8 << 20;

/// An empty vector with room for `n` elements, on huge pages where it is [`LARGE`] (see the
/// module doc). Its pages are not touched yet: the first writes fault them in, as huge pages.
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes >= LARGE {
        advise(v.as_mut_ptr().cast(), bytes);
    }
    v
}

/// `n` zeros on ordinary pages, every page written now, in order (see the module doc).
pub fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

/// Asks for huge pages for the whole pages inside `bytes` bytes at `start`. Only a hint: a
/// refusal leaves ordinary pages.
#[cfg(target_os = "linux")]
fn advise(start: *mut u8, bytes: usize) {
    const PAGE: usize = 4096;
    let begin = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize + bytes) / PAGE * PAGE;
    if end > begin {
        // SAFETY: the range lies inside one live allocation (rounded inwards to whole pages);
        // MADV_HUGEPAGE changes how its pages are backed, never their contents.
        unsafe {
            libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: *mut u8, _: usize) {}

#[cfg(test)]
mod tests {
    /// Whether the kernel may back the mapping holding `addr` with huge pages (`THPeligible`
    /// in `/proc/self/smaps`); `None` where that cannot be read.
    fn eligible(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = head.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
        None
    }

    #[test]
    fn large_buffers_ask_for_huge_pages_and_hold_what_is_written() {
        let n = super::LARGE / 4 + 3;
        let mut w: Vec<f32> = super::with_capacity(n);
        w.extend((0..n).map(|i| i as f32));
        assert_eq!((w.len(), w[0], w[n - 1]), (n, 0.0, (n - 1) as f32));
        let z = super::zeros(n);
        assert!(z.len() == n && z.iter().all(|&x| x == 0.0));
        // Where huge pages are only given on request (the kernel's default `madvise`), the
        // advised buffer may have them and the workspace (ordinary pages) may not.
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !mode.is_ok_and(|m| m.contains("[madvise]")) {
            return;
        }
        let middle = |p: *const f32| p as usize + n * 2;
        assert_eq!(eligible(middle(w.as_ptr())), Some(true));
        assert_eq!(eligible(middle(z.as_ptr())), Some(false));
    }
}
