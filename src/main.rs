//! `ws-init`: the resident core as PID 1 (ws-init-core only: libc and std).
//! Every command other than `ws-init CMD` becomes `ws-init-bringup`.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(ws_init_core::entry::main().clamp(0, 255) as u8)
}
