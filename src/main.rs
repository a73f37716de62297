//! The `rackboot` binary: `rackboot serve` runs the daemon, every other
//! subcommand is a client of its API (see [`rackboot::entry::cli`]).

fn main() {
    std::process::exit(rackboot::entry::cli::main());
}
