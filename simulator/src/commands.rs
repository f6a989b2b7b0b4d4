//! Each subcommand: load the device, call the server, remember the result.

use std::path::Path;

use anyhow::{Result, bail};
use countersign_core::client::{Clock, SystemClock};
use countersign_core::protocol::wire::{ChallengeView, DecisionReceipt, PushSettings};
use countersign_core::protocol::{Decision, DenyReason, Platform};
use serde_json::{json, to_value};

use crate::state::DeviceState;
use crate::{Command, OnOff, PlatformArg, ReasonArg, Report, display};

pub fn run(state_path: &Path, command: Command) -> Result<Report> {
    match command {
        Command::Enrol { server, code, name, platform, push_token, no_notifications } => {
            let platform = match platform {
                PlatformArg::Ios => Platform::Ios,
                PlatformArg::Android => Platform::Android,
            };
            enrol(state_path, server, &code, &name, platform, push_token, !no_notifications)
        }
        Command::Pending => pending(state_path),
        Command::Show { id } => {
            let view = DeviceState::load_enrolled(state_path)?.client()?.challenge(&id)?;
            Ok(Report { human: display::details(&view, SystemClock.now_ms()), json: to_value(&view)? })
        }
        Command::Approve { id, number } => approve(state_path, &id, number),
        Command::Deny { id, reason } => {
            let reason = match reason {
                ReasonArg::NotMe => DenyReason::NotMe,
                ReasonArg::Cancelled => DenyReason::Cancelled,
            };
            let state = DeviceState::load_enrolled(state_path)?;
            let client = state.client()?;
            let view = client.challenge(&id)?;
            Ok(receipt(&view, &client.decide(&view, Decision::Deny(reason), None)?))
        }
        Command::PushSettings { token, clear_token, notifications } => {
            push_settings(state_path, token, clear_token, notifications)
        }
        Command::Unenrol { card } => unenrol(state_path, card),
    }
}

fn enrol(
    state_path: &Path,
    server: Option<String>,
    code: &str,
    name: &str,
    platform: Platform,
    push_token: Option<String>,
    notifications_enabled: bool,
) -> Result<Report> {
    let mut state = match (DeviceState::load(state_path)?, server) {
        (Some(state), Some(server)) if server.trim_end_matches('/') != state.server_url.trim_end_matches('/') => {
            bail!(
                "{} belongs to the server {}; use another --state file for {server}",
                state_path.display(),
                state.server_url
            )
        }
        (Some(state), _) => state,
        (None, Some(server)) => DeviceState::new(server, platform),
        (None, None) => bail!("no device state at {} yet: pass --server URL", state_path.display()),
    };
    state.platform = platform;
    state.push_token = push_token.or(state.push_token);
    state.notifications_enabled = notifications_enabled;
    let client = state.client()?;
    // Stored before the code is redeemed: a code is single use, so a key
    // that the server accepted must never be lost.
    state.save(state_path)?;
    let response = client.enrol(code, platform, state.push_token.clone(), notifications_enabled, name)?;
    state.device_id = Some(response.device_id.clone());
    state.remember_card(response.card.clone());
    state.save(state_path)?;
    let human = format!(
        "Enrolled card {} ({}) on device {}.\nState saved in {} (it holds the device's private key).\n",
        response.card.masked_pan,
        response.card.issuer_name,
        response.device_id,
        state_path.display()
    );
    Ok(Report { human, json: to_value(&response)? })
}

fn pending(state_path: &Path) -> Result<Report> {
    let pending = DeviceState::load_enrolled(state_path)?.client()?.pending_challenges()?;
    let human = if pending.challenges.is_empty() {
        "No purchases are waiting for approval.\n".to_owned()
    } else {
        display::table(&pending.challenges, SystemClock.now_ms())
    };
    Ok(Report { human, json: to_value(&pending)? })
}

fn approve(state_path: &Path, id: &str, number: Option<u8>) -> Result<Report> {
    let client = DeviceState::load_enrolled(state_path)?.client()?;
    let view = client.challenge(id)?;
    match (&view.number_choices, number) {
        (Some(choices), None) => bail!(
            "this purchase asks for the number shown at checkout: pass --number with one of {}",
            choices.iter().map(|n| format!("{n:02}")).collect::<Vec<_>>().join(", ")
        ),
        (Some(choices), Some(n)) if !choices.contains(&n) => {
            bail!("{n} is not one of the numbers this purchase offers")
        }
        (None, Some(_)) => {
            bail!("this purchase does not ask for a number: approve it without --number")
        }
        _ => {}
    }
    Ok(receipt(&view, &client.decide(&view, Decision::Approve, number)?))
}

fn receipt(view: &ChallengeView, receipt: &DecisionReceipt) -> Report {
    let outcome = serde_json::to_value(receipt.outcome).ok().and_then(|v| v.as_str().map(str::to_owned));
    let human = format!(
        "Purchase {} at {} for {}: {}.\n",
        view.challenge_id,
        view.terms.merchant_name,
        display::amount(&view.terms),
        outcome.as_deref().unwrap_or("answered")
    );
    Report { human, json: json!(receipt) }
}

fn push_settings(
    state_path: &Path,
    token: Option<String>,
    clear_token: bool,
    notifications: Option<OnOff>,
) -> Result<Report> {
    let mut state = DeviceState::load_enrolled(state_path)?;
    let settings = PushSettings {
        push_token: if clear_token { None } else { token.or_else(|| state.push_token.clone()) },
        notifications_enabled: notifications.map_or(state.notifications_enabled, |n| matches!(n, OnOff::On)),
    };
    state.client()?.set_push_settings(&settings)?;
    state.push_token = settings.push_token.clone();
    state.notifications_enabled = settings.notifications_enabled;
    state.save(state_path)?;
    let human = format!(
        "Notifications {}; push token {}.\n",
        if settings.notifications_enabled { "on" } else { "off" },
        settings.push_token.as_deref().unwrap_or("none")
    );
    Ok(Report { human, json: to_value(&settings)? })
}

fn unenrol(state_path: &Path, card: Option<String>) -> Result<Report> {
    let mut state = DeviceState::load_enrolled(state_path)?;
    let client = state.client()?;
    match card {
        Some(card_id) => {
            client.unenrol_card(&card_id)?;
            state.cards.retain(|known| known.card_id != card_id);
            state.save(state_path)?;
            let human = format!("This device no longer approves purchases on card {card_id}.\n");
            Ok(Report { human, json: json!({ "unenrolled": "card", "cardId": card_id }) })
        }
        None => {
            client.unenrol_device()?;
            DeviceState::remove(state_path)?;
            let device_id = state.device_id.unwrap_or_default();
            let human = format!(
                "Device {device_id} is unenrolled from every card; {} and its key were deleted.\n",
                state_path.display()
            );
            Ok(Report { human, json: json!({ "unenrolled": "device", "deviceId": device_id }) })
        }
    }
}
