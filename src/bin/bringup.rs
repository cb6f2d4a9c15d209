//! `ws-init-bringup`: bring-up (probe, plan, apply, TLS), `doctor`,
//! `wait-docker` and `start-docker`, run by the resident core and gone again.
fn main() -> std::process::ExitCode {
    ws_init::entry::main()
}
