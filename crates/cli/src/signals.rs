//! Host signals for a running VM: SIGTERM and SIGINT stop it (saving it
//! first with --save-on-exit), SIGUSR1 saves a snapshot while it runs on.

use machine::HostEvent;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::{Handle, Signals};
use std::sync::mpsc::Sender;

/// Stops forwarding when dropped.
pub struct Forwarding(Handle);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Turn signals into host events for the runner.
pub fn forward(events: Sender<HostEvent>) -> std::io::Result<Forwarding> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = if signal == SIGUSR1 {
                HostEvent::Save
            } else {
                HostEvent::Stop
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(Forwarding(handle))
}
