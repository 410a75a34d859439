fn main() {
    let path = std::env::args().nth(1).unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    match grammar::parse(&src) {
        Ok(f) => println!(
            "{:#?}",
            f.items
                .iter()
                .map(|i| i.name().name.clone())
                .collect::<Vec<_>>()
        ),
        Err(d) => print!("{}", grammar::render(&path, &src, &d)),
    }
}
