//! The Debian image's parsers of downloaded bytes.

use guest_image::fuzzing;

pub fn cpio(data: &[u8]) {
    fuzzing::cpio(data);
}

pub fn deb822(data: &[u8]) {
    fuzzing::deb822(&String::from_utf8_lossy(data));
}

pub fn inrelease(data: &[u8]) {
    fuzzing::inrelease(data);
}
