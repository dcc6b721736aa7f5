fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_default();
    let r = native::verify::verify_dir(std::path::Path::new(&dir))?;
    for l in r.lines() { println!("{l}"); }
    Ok(())
}
