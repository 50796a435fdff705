//! The TLS every HTTP client of symdepot speaks: rustls with the `ring`
//! crypto provider (pure Rust and assembly, no C toolchain beyond what `ring`
//! itself builds). The upload client, upload by download, the mirror's
//! fetches and the S3 blob store all call [`use_ring`] before they build a
//! client, so the provider is chosen once per process, whichever comes first.

/// Makes `ring` the process's default rustls provider (once; later calls and
/// a provider chosen before are left as they are).
pub fn use_ring() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_get_ring_as_the_provider() {
        super::use_ring();
        let chosen = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(chosen), names(&ring));
    }
}
