mod allocator;

fn main() -> std::process::ExitCode {
    etx_server::cli::main()
}
