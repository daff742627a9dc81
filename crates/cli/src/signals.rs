//! Host signals for a running VM: SIGTERM and SIGINT stop it (saving it
//! first with --save-on-exit), SIGUSR1 saves a snapshot while it runs on,
//! SIGUSR2 suspends a kept VM (`lockstep vm suspend`): it stops with its
//! state saved into its bundle.

use machine::HostEvent;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::{Handle, Signals};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Stops forwarding when dropped.
pub struct Forwarding(Handle);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Turn signals into host events for the runner; with `suspend`, SIGUSR2
/// raises it and stops the run.
pub fn forward(
    events: Sender<HostEvent>,
    suspend: Option<Arc<AtomicBool>>,
) -> std::io::Result<Forwarding> {
    let mut wanted = vec![SIGTERM, SIGINT, SIGUSR1];
    if suspend.is_some() {
        wanted.push(SIGUSR2);
    }
    let mut signals = Signals::new(wanted)?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = match signal {
                SIGUSR1 => HostEvent::Save,
                SIGUSR2 => {
                    if let Some(flag) = &suspend {
                        flag.store(true, Ordering::SeqCst);
                    }
                    HostEvent::Stop
                }
                _ => HostEvent::Stop,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(Forwarding(handle))
}
