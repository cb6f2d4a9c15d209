fn main() -> std::process::ExitCode {
    ws_init::entry::main()
}
