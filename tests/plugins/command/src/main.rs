//! A WASI command: a valid component that is not a credbroker plugin.

fn main() {
    println!("hello from a command, not a plugin");
}
