//! `octo`: the Octo server's command line. It parses arguments, calls one function of octo-server per
//! command, and prints what comes back (the logic lives in octo-server).

mod cli;
mod output;
mod secrets;

use cli::{
    Command, FeedsCommand, JobsCommand, LibraryCommand, LifecycleCommand, NodesCommand,
    PackagesCommand, PluginsCommand, ProxiesCommand, TargetsCommand, TasksCommand,
    TelemetryCommand,
};
use octo_server::jobs::{Outcome, Selection};
use octo_server::targets::{Reach, Target};
use octo_server::{
    Home, configure, jobs, library, outbound, plugins, proxy, runs, server, tasks, vendor,
};
use output::{json, terminal_sink};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::from_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCTO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: what failed and why; causes are joined rather than printed as a backtrace.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Success or failure as an exit code.
fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(cli.home.as_deref())?;
    let sink = terminal_sink();
    match cli.command {
        Command::RunStep(args) => output::run_step(&home, &args),
        Command::Plugins { command } => match command {
            PluginsCommand::Pack(args) => {
                let manifest = runs::pack::pack(&args.component, &args.manifest, &args.output)?;
                println!(
                    "packed {} {} ({} plugin, API {}) into {}",
                    manifest.id,
                    manifest.version,
                    manifest.kind,
                    manifest.api_version,
                    args.output.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            PluginsCommand::Inspect(args) => {
                json(&runs::pack::inspect(&args.component)?)?;
                Ok(ExitCode::SUCCESS)
            }
            PluginsCommand::Lifecycle(command) => lifecycle(&home, command, &sink),
            PluginsCommand::Grant(args) => {
                let target = match (&args.file, &args.sha256) {
                    (Some(path), _) => outbound::grants::GrantTarget::File(path),
                    (None, Some(digest)) => outbound::grants::GrantTarget::Sha256(digest),
                    (None, None) => outbound::grants::GrantTarget::Installed,
                };
                print!(
                    "{}",
                    outbound::grants::grant(
                        &home,
                        &args.grant.plugin,
                        &args.grant.destination,
                        &target
                    )?
                );
                Ok(ExitCode::SUCCESS)
            }
            PluginsCommand::Revoke(args) => {
                outbound::grants::revoke(&home, &args.plugin, &args.destination)?;
                println!("Revoked {} from plugin {}.", args.destination, args.plugin);
                Ok(ExitCode::SUCCESS)
            }
            PluginsCommand::Grants(args) => {
                let list = outbound::grants::list(&home, args.plugin.as_deref())?;
                if args.json {
                    json(&list.to_json())?;
                } else {
                    print!("{list}");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Library { command } => {
            match command {
                LibraryCommand::List(args) => {
                    let list = library::list(&home, args.text.as_deref(), &sink)?;
                    if args.json {
                        json(&list.rows)?;
                    } else {
                        print!("{list}");
                    }
                }
                LibraryCommand::Show(args) => {
                    let template = library::show(&home, &args.id, &sink)?;
                    if args.json {
                        json(&template.0)?;
                    } else {
                        print!("{template}");
                    }
                }
                LibraryCommand::Install(args) => {
                    print!("{}", library::install(&home, &args.id, &sink)?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { command } => match command {
            JobsCommand::List(args) => {
                let list = jobs::list(&home)?;
                if args.json {
                    json(&list.0)?;
                } else {
                    print!("{list}");
                }
                Ok(ExitCode::SUCCESS)
            }
            JobsCommand::Run(args) => {
                let which = match (args.name, args.all) {
                    (Some(name), _) => Selection::Named(name),
                    (None, true) => Selection::All,
                    (None, false) => Selection::Due,
                };
                let runs = jobs::run(&home, &which, &sink)?;
                if runs.is_empty() {
                    println!("no job is due");
                }
                Ok(exit(runs.iter().all(|r| r.outcome != Outcome::Failed)))
            }
            JobsCommand::Watch => match jobs::watch(&home, &sink)? {},
        },
        Command::Tasks { command } => match command {
            TasksCommand::List(args) => {
                let list = tasks::list(&home, &args.states, args.limit)?;
                if args.json {
                    json(&list.to_json())?;
                } else {
                    print!("{list}");
                }
                Ok(ExitCode::SUCCESS)
            }
            TasksCommand::Show(args) => output::show_task(&home, &args),
            TasksCommand::Cancel { id } => {
                println!("{}", tasks::cancel(&home, id)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Configure(args) => {
            print!("{}", configure::configure(&home, &args.options()?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ShowConfiguration(args) => {
            let shown = configure::show(&home)?;
            if args.json {
                json(&shown.to_json()?)?;
            } else {
                print!("{shown}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbound(args) => {
            let report = outbound::report::report(&home)?;
            if args.json {
                json(&report.to_json())?;
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Nodes { command } => match command {
            NodesCommand::List { json: as_json } => {
                let list = octo_server::nodes::list(&home)?;
                if as_json {
                    json(&list.to_json())?;
                } else {
                    print!("{list}");
                }
                Ok(ExitCode::SUCCESS)
            }
            NodesCommand::Drain { name, off } => {
                println!("{}", octo_server::nodes::drain(&home, &name, !off)?);
                Ok(ExitCode::SUCCESS)
            }
            NodesCommand::Cap { name, cap } => {
                println!("{}", octo_server::nodes::cap(&home, &name, cap)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Run(args) => {
            let options = server::RunOptions {
                comms_listen_port: args.comms_listen_port,
                listen_address: args.listen_address,
                node: args.node,
                node_timeout: args.node_timeout,
            };
            server::run(&home, &options, output::ready, &sink)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::NewCertificate => {
            println!("{}", server::new_certificate(&home)?);
            eprintln!("A new certificate was created; tentacles must trust the new thumbprint.");
            Ok(ExitCode::SUCCESS)
        }
        Command::ShowThumbprint { json: as_json } => {
            let thumbprint = server::thumbprint(&home)?;
            if as_json {
                println!(
                    "{}",
                    serde_json::json!({ "thumbprint": thumbprint.to_string() })
                );
            } else {
                println!("{thumbprint}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy(args) => {
            print!("{}", proxy::configure(&home, &args.flags)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxies { command } => {
            match command {
                ProxiesCommand::Add {
                    name,
                    host,
                    port,
                    username,
                    password,
                } => {
                    let shown = proxy::add_named(
                        &home,
                        proxy::NewProxy {
                            name: name.clone(),
                            host,
                            port,
                            username,
                            password,
                        },
                    )?;
                    println!("proxy {name}: {shown}");
                }
                ProxiesCommand::List(args) => {
                    let proxies = proxy::list_named(&home)?;
                    if args.json {
                        json(&proxies)?;
                    } else if proxies.is_empty() {
                        println!(
                            "no named proxies (add one with `octo proxies add NAME --host H --port P`)"
                        );
                    } else {
                        for (name, p) in &proxies {
                            println!("{name}\t{}", proxy::describe_named(p));
                        }
                    }
                }
                ProxiesCommand::Remove { name } => {
                    proxy::remove_named(&home, &name)?;
                    println!("removed proxy {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets { command } => targets(&home, command, &sink),
        Command::Feeds { command } => feeds(&home, command, &sink),
        Command::Packages { command } => packages(&home, command, &sink),
        Command::CheckUpdates { json: as_json } => {
            let status = vendor::check_updates_now(&home, &sink)?;
            if as_json {
                json(&status)?;
            } else {
                print!("{status}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Telemetry {
            command: TelemetryCommand::Preview,
        } => {
            println!("{}", vendor::telemetry_preview(&home)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json: as_json } => {
            let status = vendor::status(&home)?;
            if as_json {
                json(&status.to_json())?;
            } else {
                print!("{status}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lifecycle(
    home: &Home,
    command: LifecycleCommand,
    sink: &octo_server::Sink,
) -> anyhow::Result<ExitCode> {
    match command {
        LifecycleCommand::Search(args) => {
            let found = plugins::search(home, args.text.as_deref(), sink)?;
            if args.json {
                json(&found.rows)?;
            } else {
                print!("{found}");
            }
        }
        LifecycleCommand::List(args) => {
            let list = plugins::list(home)?;
            if args.json {
                json(&list.0)?;
            } else {
                print!("{list}");
            }
        }
        LifecycleCommand::Install(args) => {
            let installed = match (&args.file, &args.spec) {
                (Some(file), _) => plugins::install::install_file(home, file)?,
                (None, Some(spec)) => plugins::install::install_spec(home, spec, sink)?,
                (None, None) => anyhow::bail!("give a plugin ID[@REQ] or --file PATH"),
            };
            print!("{installed}");
        }
        LifecycleCommand::Update(args) => {
            let updated = plugins::update::update(home, args.id.as_deref(), sink)?;
            print!("{updated}");
            for failure in &updated.failures {
                eprintln!("error: {failure}");
            }
            return Ok(exit(updated.is_ok()));
        }
        LifecycleCommand::Remove(args) => print!("{}", plugins::remove(home, &args.id)?),
        LifecycleCommand::Rollback(args) => print!("{}", plugins::rollback(home, &args.id)?),
        LifecycleCommand::Verify => {
            let verified = plugins::verify(home)?;
            if verified.is_ok() {
                print!("{verified}");
            } else {
                eprint!("{verified}");
            }
            return Ok(exit(verified.is_ok()));
        }
        LifecycleCommand::Export(args) => {
            print!(
                "{}",
                plugins::bundle::export(home, &args.to, &args.specs, sink)?
            )
        }
        LifecycleCommand::Import(args) => print!("{}", plugins::bundle::import(home, &args.dir)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn targets(
    home: &Home,
    command: TargetsCommand,
    sink: &octo_server::Sink,
) -> anyhow::Result<ExitCode> {
    use octo_server::targets as t;
    match command {
        TargetsCommand::AddListening {
            name,
            url,
            thumbprint,
            roles,
            proxy,
        } => {
            t::add(
                home,
                Target {
                    name: name.clone(),
                    reach: Reach::Listening { url },
                    thumbprint,
                    roles,
                    proxy: proxy.clone(),
                },
                sink,
            )?;
            match proxy {
                Some(proxy) => {
                    println!("Added listening target {name} (through the proxy {proxy})")
                }
                None => println!("Added listening target {name}"),
            }
        }
        TargetsCommand::SetProxy { name, proxy, none } => {
            let proxy = if none { None } else { proxy };
            t::set_proxy(home, &name, proxy.clone(), sink)?;
            match proxy {
                Some(proxy) => println!("{name} is now dialled through the proxy {proxy}"),
                None => println!("{name} is now dialled directly"),
            }
        }
        TargetsCommand::AddPolling {
            name,
            thumbprint,
            roles,
        } => {
            t::add(
                home,
                Target {
                    name: name.clone(),
                    reach: Reach::Polling,
                    thumbprint,
                    roles,
                    proxy: None,
                },
                sink,
            )?;
            println!("Added polling target {name}");
        }
        TargetsCommand::List(args) => {
            let all = t::list(home)?;
            if args.json {
                json(&all)?;
            } else if all.targets.is_empty() {
                println!("No targets; add one with `octo targets add-listening` or `add-polling`.");
            } else {
                for t in &all.targets {
                    println!(
                        "{:<20} {:<40} {} roles: {}",
                        t.name,
                        t.describe_reach(),
                        t.thumbprint,
                        if t.roles.is_empty() {
                            "-".to_owned()
                        } else {
                            t.roles.join(",")
                        }
                    );
                }
            }
        }
        TargetsCommand::Remove { name } => {
            t::remove(home, &name, sink)?;
            println!("Removed target {name}");
        }
        TargetsCommand::Health { names } => {
            let ok = t::health(home, names, output::health_event)?;
            return Ok(exit(ok));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn feeds(home: &Home, command: FeedsCommand, sink: &octo_server::Sink) -> anyhow::Result<ExitCode> {
    use octo_server::package_feeds;
    match command {
        FeedsCommand::Add(args) => {
            let credentials = match (args.username, args.password, args.password_stdin) {
                (None, _, _) => None,
                (Some(username), Some(Some(password)), _) => Some((username, password)),
                (Some(username), Some(None), from_stdin)
                | (Some(username), None, from_stdin @ true) => {
                    let password =
                        secrets::read_password(&format!("feed {}", args.name), from_stdin)?;
                    Some((username, password))
                }
                (Some(_), None, false) => anyhow::bail!(
                    "feed {}: --username needs --password (read from the terminal or stdin without a value) or --password-stdin",
                    args.name
                ),
            };
            let row = package_feeds::add(
                home,
                package_feeds::NewFeed {
                    name: args.name,
                    kind: args.kind,
                    url: args.url,
                    credentials: credentials.map(|(username, password)| {
                        octo_packages::Credentials { username, password }
                    }),
                    max_package_size: args.max_package_size,
                },
            )?;
            println!("added feed {row}");
        }
        FeedsCommand::List(args) => {
            let list = package_feeds::list(home)?;
            if args.json {
                json(&list.0)?;
            } else {
                print!("{list}");
            }
        }
        FeedsCommand::Remove { name } => {
            package_feeds::remove(home, &name)?;
            println!("removed feed {name}");
        }
        FeedsCommand::Test {
            name,
            json: as_json,
        } => {
            let report = package_feeds::test(home, &name, sink)?;
            if as_json {
                json(&report)?;
            } else {
                println!("feed {}: {}", report.feed, report.summary);
                for d in &report.details {
                    println!("  {d}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn packages(
    home: &Home,
    command: PackagesCommand,
    sink: &octo_server::Sink,
) -> anyhow::Result<ExitCode> {
    use octo_server::packages;
    match command {
        PackagesCommand::Versions {
            feed,
            id,
            json: as_json,
        } => {
            let list = packages::versions(home, &feed, &id, sink)?;
            if as_json {
                json(&list)?;
            } else {
                print!("{list}");
            }
        }
        PackagesCommand::Download {
            feed,
            package,
            max_size,
            json: as_json,
        } => {
            let options = packages::DownloadOptions { max_size };
            let acquired = packages::download(home, &feed, &package, &options, sink)?;
            if as_json {
                json(&acquired)?;
            } else {
                print!("{acquired}");
            }
        }
        PackagesCommand::List(args) => {
            let list = packages::list(home)?;
            if args.json {
                json(&list.0)?;
            } else {
                print!("{list}");
            }
        }
        PackagesCommand::Prune {
            all,
            older_than,
            json: as_json,
        } => {
            let report = packages::prune(home, &packages::PruneOptions { all, older_than })?;
            if as_json {
                json(&report)?;
            } else {
                print!("{report}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
