//! GPU memory in use, sampled every millisecond by a background thread while a benchmark runs.
//!
//! The figure is the driver's `total - free`: everything on the device, the CUDA context
//! included. candle frees tensors as they drop (no caching allocator), so the peak of the
//! samples above the idle level before loading is what the model and its work needed; a peak
//! shorter than a millisecond can be missed. Nothing is measured on the CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use candle_core::Device;

/// Reads the bytes in use on one device, from any thread.
type Reader = Box<dyn Fn() -> Option<u64> + Send>;

pub struct MemorySampler {
    peak: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MemorySampler {
    /// Starts sampling `device`; `None` on the CPU and in builds without the `cuda` feature.
    pub fn start(device: &Device) -> Option<Self> {
        let read = reader(device)?;
        let first = read()?;
        let peak = Arc::new(AtomicU64::new(first));
        let last = Arc::new(AtomicU64::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, l, s) = (peak.clone(), last.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(used) = read() {
                    l.store(used, Ordering::Relaxed);
                    p.fetch_max(used, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Some(Self { peak, last, stop, thread: Some(thread) })
    }

    /// The highest sample since the start or the last [`MemorySampler::reset_peak`].
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn current_bytes(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        self.peak.store(self.current_bytes(), Ordering::Relaxed);
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(feature = "cuda")]
fn reader(device: &Device) -> Option<Reader> {
    let Device::Cuda(d) = device else { return None };
    let context = d.cuda_stream().context().clone();
    Some(Box::new(move || {
        // The driver answers for the context current on the calling thread.
        context.bind_to_thread().ok()?;
        let (free, total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
        Some((total - free) as u64)
    }))
}

#[cfg(not(feature = "cuda"))]
fn reader(_: &Device) -> Option<Reader> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sampled_on_the_cpu() {
        assert!(MemorySampler::start(&Device::Cpu).is_none());
    }
}
