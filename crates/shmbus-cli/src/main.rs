fn main() {
    println!("shmbus demo: coming with the CLI issue");
}
