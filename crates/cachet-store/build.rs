// sqlx::migrate! embeds crates/cachet-store/migrations at compile time; a new
// migration file alone must rebuild the crate (sqlx documents this build script).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
