//! Write the seed corpus of every fuzz target from the real vectors:
//! `corpus/<target>/<case>` = case index byte ‖ evidence (or ‖ first
//! endorsement for the `endorsements` target).

use cachet_fuzz::{cases_of, TARGETS};

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for (target, tees) in TARGETS {
        let dir = out.join(target);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{}: {e}", dir.display());
            std::process::exit(2);
        }
        for (i, c) in cases_of(tees).iter().enumerate() {
            let mut seed = vec![i as u8];
            if *target == "http_attest" {
                seed = vec![0];
                seed.extend_from_slice(&cachet_fuzz::http::attest_body(c));
            } else if *target == "endorsements" {
                match c.endorsements.first() {
                    Some(e) => seed.extend_from_slice(&e.bytes),
                    None => continue,
                }
            } else {
                seed.extend_from_slice(&c.evidence);
            }
            let _ = std::fs::write(dir.join(&c.id), seed);
        }
        println!("{target}: {} seeds", cases_of(tees).len());
    }
}
