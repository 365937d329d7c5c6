//! The component's allocator: a bump arena in front of the system allocator.
//!
//! The guest keeps nothing between calls, so every allocation a call makes is freed by
//! the time the host has read its answer (the generated post-return function frees the
//! last ones). Allocating from an arena is then a pointer bump, freeing is a count, and
//! when the count of live arena allocations falls to zero the whole arena is free
//! again. Should anything outlive a call, the count never reaches zero and the arena
//! simply fills up: allocations then go to the system allocator, exactly as without
//! the arena. Correctness never depends on the reset happening.
//!
//! Measured: allocation was about a sixth of the guest's time under dlmalloc (see
//! BENCHMARKS.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

#[repr(C, align(16))]
struct Buffer<const N: usize>([u8; N]);

struct State<const N: usize> {
    buffer: Buffer<N>,
    /// Bytes of the buffer handed out since it was last empty.
    top: usize,
    /// Arena allocations not freed yet.
    live: usize,
}

pub struct Arena<const N: usize> {
    state: UnsafeCell<State<N>>,
}

// SAFETY: the component is single-threaded (wasm32 without the atomics feature has no
// threads), so the arena is never reached from two threads.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            state: UnsafeCell::new(State {
                buffer: Buffer([0; N]),
                top: 0,
                live: 0,
            }),
        }
    }

    /// Whether `ptr` was handed out by the arena.
    fn owns(state: &State<N>, ptr: *mut u8) -> bool {
        let start = state.buffer.0.as_ptr() as usize;
        (start..start + N).contains(&(ptr as usize))
    }

    fn bump(state: &mut State<N>, layout: Layout) -> Option<*mut u8> {
        let start = state.buffer.0.as_mut_ptr() as usize;
        let at = (start + state.top).checked_next_multiple_of(layout.align())?;
        let end = at.checked_add(layout.size())?;
        if end > start + N {
            return None;
        }
        state.top = end - start;
        state.live += 1;
        Some(at as *mut u8)
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every pointer returned is either a fresh, suitably aligned, unaliased range of
// the arena's buffer or comes from `System`; frees go back where the pointer came from.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference to the state outlives
        // this call.
        let state = unsafe { &mut *self.state.get() };
        match Self::bump(state, layout) {
            Some(ptr) => ptr,
            // SAFETY: forwarded unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.state.get() };
        if Self::owns(state, ptr) {
            state.live -= 1;
            if state.live == 0 {
                state.top = 0;
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        {
            // SAFETY: as in `alloc`; the borrow ends before `alloc`/`dealloc` below.
            let state = unsafe { &mut *self.state.get() };
            if Self::owns(state, ptr) {
                let start = state.buffer.0.as_ptr() as usize;
                let offset = ptr as usize - start;
                // The newest allocation grows or shrinks where it is.
                if offset + layout.size() == state.top && offset + new_size <= N {
                    state.top = offset + new_size;
                    return ptr;
                }
                if new_size <= layout.size() {
                    return ptr;
                }
            }
        }
        // SAFETY: `new_size` is non-zero and, rounded to the alignment, does not overflow
        // (the caller's contract for `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a plain allocation, a copy between two distinct live blocks, and the
        // old block's free.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn allocations_are_aligned_distinct_and_the_arena_empties_when_all_are_freed() {
        let arena = Arena::<256>::new();
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            let c = arena.alloc(layout(16, 16));
            assert_eq!(b as usize % 8, 0);
            assert_eq!(c as usize % 16, 0);
            assert!(a < b && b < c);
            a.write_bytes(0xaa, 3);
            b.write_bytes(0xbb, 8);
            assert_eq!(*a.add(2), 0xaa, "b did not overlap a");
            arena.dealloc(b, layout(8, 8));
            arena.dealloc(a, layout(3, 1));
            // One still live: nothing is reused yet.
            let d = arena.alloc(layout(1, 1));
            assert!(d > c);
            arena.dealloc(c, layout(16, 16));
            arena.dealloc(d, layout(1, 1));
            // All freed: the arena starts over.
            assert_eq!(arena.alloc(layout(3, 1)), a);
        }
    }

    #[test]
    fn a_full_arena_falls_back_to_the_system_allocator() {
        let arena = Arena::<64>::new();
        unsafe {
            let inside = arena.alloc(layout(48, 8));
            let outside = arena.alloc(layout(48, 8));
            assert!(!outside.is_null());
            let state = &*arena.state.get();
            assert!(Arena::owns(state, inside));
            assert!(!Arena::owns(state, outside));
            outside.write_bytes(1, 48);
            arena.dealloc(outside, layout(48, 8));
            arena.dealloc(inside, layout(48, 8));
        }
    }

    #[test]
    fn realloc_keeps_the_contents_in_place_or_moved() {
        let arena = Arena::<128>::new();
        unsafe {
            let a = arena.alloc(layout(4, 1));
            a.copy_from_nonoverlapping(b"abcd".as_ptr(), 4);
            // The newest block grows in place.
            let grown = arena.realloc(a, layout(4, 1), 8);
            assert_eq!(grown, a);
            let b = arena.alloc(layout(4, 1));
            // Not the newest any more: it moves, contents and all.
            let moved = arena.realloc(grown, layout(8, 1), 16);
            assert_ne!(moved, grown);
            assert_eq!(std::slice::from_raw_parts(moved, 4), b"abcd");
            // Too big for the arena: moved to the system allocator.
            let big = arena.realloc(moved, layout(16, 1), 1024);
            assert_eq!(std::slice::from_raw_parts(big, 4), b"abcd");
            assert!(!Arena::owns(&*arena.state.get(), big));
            arena.dealloc(big, layout(1024, 1));
            arena.dealloc(b, layout(4, 1));
            assert_eq!((*arena.state.get()).live, 0);
        }
    }
}
