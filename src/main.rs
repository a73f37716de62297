//! The `rackboot` binary: `rackboot serve` runs the daemon, every other
//! subcommand is a client of its API (see [`rackboot::cli`]).

fn main() {
    std::process::exit(rackboot::cli::main());
}
