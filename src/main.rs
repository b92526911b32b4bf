fn main() {
    std::process::exit(devinst::main());
}
