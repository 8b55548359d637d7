//! A complete custom step: greets someone and publishes the greeting for later steps.
use octo_plugin_sdk::prelude::*;

/// The step. Steps keep no state: `describe` and `run` are associated functions.
struct HelloStep;

impl Step for HelloStep {
    /// The step's name and parameters, as shown to whoever configures it.
    fn describe() -> Description {
        Description::new("Hello")
            .param(Param::new("name").label("Who to greet").default("world"))
            .param(Param::new("times").label("How many greetings").default(1))
    }

    /// Runs the step. Returning an error fails it; the message is shown to the user.
    fn run(args: Args) -> Result {
        let name = args.required("name")?; // text; an error naming `name` if it is empty
        let times: u8 = args.get("times")?; // typed; "parameter 'times' must be ..." if not a number
        for _ in 0..times {
            info!("Hello, {name}!"); // a line in the deployment log
        }
        set_output("Greeting", &format!("Hello, {name}!")); // readable by later steps
        Ok(())
    }
}

// Exports the step and embeds its manifest; id and version come from Cargo.toml.
step!(
    HelloStep,
    description = "Greets someone and sets the Greeting output variable"
);
