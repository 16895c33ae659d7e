//! The process harness (`harness/`, the `chat-harness` crate) removes from every child it starts
//! each variable the server's configuration reads, so that no test, benchmark or fault run is
//! pointed at someone else's backends by the environment it was started in.

use chat_system::config::Config;

#[test]
fn the_harness_clears_every_variable_the_configuration_reads() {
    let command = <Config as clap::Args>::augment_args(clap::Command::new("chat-system"));
    let read: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(read.contains(&"DATABASE_URL".to_owned()), "{read:?}");
    for name in &read {
        assert!(
            chat_harness::env::BACKEND_VARIABLES.contains(&name.as_str()),
            "{name} is read by the server but not in chat_harness::env::BACKEND_VARIABLES"
        );
    }
}
