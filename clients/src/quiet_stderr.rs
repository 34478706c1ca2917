//! ALSA's library prints its own diagnostics ("ALSA lib confmisc.c:855:(parse_card) cannot
//! find card '0'" and seven more) straight to file descriptor 2 while cpal probes devices,
//! before Hark can say the one thing that matters ("no microphone available …"). Its
//! handler hook takes a C variadic callback, which stable Rust cannot define, so the probe
//! runs with fd 2 pointed at /dev/null instead and Hark's own error follows on a clean stderr.

/// Runs `probe` with the process's stderr sent to /dev/null, then restores it. Anything any
/// thread writes to stderr meanwhile is lost, so only short device probes go through here.
pub fn silenced<T>(probe: impl FnOnce() -> T) -> T {
    let _guard = Redirect::to_null();
    probe()
}

/// Keeps the real stderr and puts it back when dropped (also on a panic).
struct Redirect {
    saved: Option<libc::c_int>,
}

impl Redirect {
    fn to_null() -> Self {
        // SAFETY: plain descriptor calls; every failure leaves stderr as it was.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null < 0 {
                return Redirect { saved: None };
            }
            let saved = libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3);
            if saved < 0 || libc::dup2(null, libc::STDERR_FILENO) < 0 {
                libc::close(null);
                if saved >= 0 {
                    libc::close(saved);
                }
                return Redirect { saved: None };
            }
            libc::close(null);
            Redirect { saved: Some(saved) }
        }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            // SAFETY: `saved` is the descriptor duplicated in `to_null`, owned here.
            unsafe {
                libc::dup2(saved, libc::STDERR_FILENO);
                libc::close(saved);
            }
        }
    }
}
