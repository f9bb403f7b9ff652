//! In-process time of each probe section and of the whole probe (threads).
//!   cargo run --release -p probe --example probe_sections
fn main() {
    use probe::{ProbeOptions, SectionName, TpmSource};
    let time = |sections: Vec<SectionName>| {
        let opts = ProbeOptions {
            tpm: TpmSource::None,
            sections,
            ..Default::default()
        };
        let _ = probe::probe(&opts);
        let start = std::time::Instant::now();
        for _ in 0..50 {
            std::hint::black_box(probe::probe(&opts));
        }
        start.elapsed().as_secs_f64() * 1e3 / 50.0
    };
    for s in SectionName::ALL {
        println!("{:<9} {:>6.2} ms", s.as_str(), time(vec![s]));
    }
    println!("{:<9} {:>6.2} ms", "all", time(Vec::new()));
}
