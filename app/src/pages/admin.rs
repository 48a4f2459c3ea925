//! Admin pages: users and their roles, API tokens, and the audit log.

use leptos::prelude::*;
use leptos::form::ActionForm;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::admin_api::{list_audit, list_tokens, list_users, CreateToken, RevokeToken, SaveUser, UserInfo};
use crate::api::error_text;
use crate::auth::Role;
use crate::pages::ErrorNote;

/// `2026-11-22T13:26:30.857Z` as `2026-11-22 13:26 UTC`.
fn when(timestamp: &str) -> String {
    timestamp
        .parse::<jiff::Timestamp>()
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| timestamp.to_owned())
}

#[component]
fn RoleSelect(name: &'static str, selected: Role) -> impl IntoView {
    view! {
        <select name=name>
            {Role::ALL.iter().rev().map(|role| view! {
                <option value=role.as_str() selected=*role == selected>{role.as_str()}</option>
            }).collect_view()}
        </select>
    }
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let save = ServerAction::<SaveUser>::new();
    let users = Resource::new(move || save.version().get(), |_| list_users());
    view! {
        <Title text="Users"/>
        <section class="page">
            <div class="page-head"><h1>"Users"</h1></div>
            <p class="hint">"Admins manage users, integrations and the validation review; marketers build flows, contacts and bulk actions; agents work their own task inbox."</p>
            {move || save.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            <Transition fallback=|| view! { <p class="loading">"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! {
                            <table class="users">
                                <thead><tr><th>"Email"</th><th>"Name"</th><th>"Role"</th><th>"Active"</th><th>"New password"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|user| view! { <UserRow user save/> }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
            <h2>"Add a user"</h2>
            <ActionForm action=save attr:class="inline-form" attr:data-form="add-user">
                <label>"Email " <input type="email" name="user[email]" required/></label>
                <label>"Name " <input name="user[name]"/></label>
                <label>"Role " <RoleSelect name="user[role]" selected=Role::Marketer/></label>
                <input type="hidden" name="user[disabled]" value="false"/>
                <label>"Password " <input type="password" name="user[password]" minlength="10" autocomplete="new-password" required/></label>
                <button type="submit" class="primary">"Add"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn UserRow(user: UserInfo, save: ServerAction<SaveUser>) -> impl IntoView {
    let form_id = format!("user-{}", user.id);
    let email = user.email.clone();
    view! {
        <tr data-user=user.email.clone()>
            <td>{user.email.clone()}</td>
            <td><input form=form_id.clone() name="user[name]" value=user.name.clone()/></td>
            <td><select form=form_id.clone() name="user[role]">
                {Role::ALL.iter().rev().map(|role| view! {
                    <option value=role.as_str() selected=*role == user.role>{role.as_str()}</option>
                }).collect_view()}
            </select></td>
            <td><select form=form_id.clone() name="user[disabled]">
                <option value="false" selected=!user.disabled>"active"</option>
                <option value="true" selected=user.disabled>"disabled"</option>
            </select></td>
            <td><input form=form_id.clone() type="password" name="user[password]" placeholder="unchanged" autocomplete="new-password"/></td>
            <td>
                <ActionForm action=save attr:id=form_id>
                    <input type="hidden" name="user[id]" value=user.id/>
                    <input type="hidden" name="user[email]" value=email/>
                    <button type="submit">"Save"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_tokens());
    view! {
        <Title text="API tokens"/>
        <section class="page">
            <div class="page-head"><h1>"API tokens"</h1></div>
            <p class="hint">"Send a token as “Authorization: Bearer …” to the REST API. It acts as a marketer; a read token may only read. The secret is shown once, when created."</p>
            {move || create.value().get().map(|result| match result {
                Ok(created) => view! {
                    <p class="notice" data-secret=created.secret.clone()>
                        "Token “" {created.token.name} "” created. Copy it now: " <code class="secret">{created.secret.clone()}</code>
                    </p>
                }.into_any(),
                Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
            })}
            <ActionForm action=create attr:class="inline-form">
                <label>"Name " <input name="name" required/></label>
                <label>"Scope "
                    <select name="scope"><option value="read">"read"</option><option value="write">"write"</option></select>
                </label>
                <button type="submit" class="primary">"Create token"</button>
            </ActionForm>
            <Transition fallback=|| view! { <p class="loading">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No API tokens yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="tokens">
                                <thead><tr><th>"Name"</th><th>"Starts with"</th><th>"Scope"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|token| view! {
                                    <tr data-token=token.name.clone()>
                                        <td>{token.name.clone()}</td>
                                        <td><code>{token.prefix.clone()} "…"</code></td>
                                        <td>{token.scope.clone()}</td>
                                        <td>{when(&token.created_at)} " by " {token.created_by.clone()}</td>
                                        <td>{token.last_used_at.as_deref().map(when).unwrap_or_else(|| "never".into())}</td>
                                        <td>{match token.revoked_at.clone() {
                                            Some(at) => view! { <span class="pill">"revoked " {when(&at)}</span> }.into_any(),
                                            None => view! {
                                                <ActionForm action=revoke>
                                                    <input type="hidden" name="id" value=token.id/>
                                                    <button type="submit" class="danger">"Revoke"</button>
                                                </ActionForm>
                                            }.into_any(),
                                        }}</td>
                                    </tr>
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let prefix = move || query.read().get("action").filter(|a| !a.is_empty());
    let entries = Resource::new(prefix, list_audit);
    view! {
        <Title text="Audit log"/>
        <section class="page">
            <div class="page-head">
                <h1>"Audit log"</h1>
                <form method="get" class="filters">
                    <label>"Show "
                        <select name="action">
                            {[("", "everything"), ("flow.", "flows"), ("bulk.", "bulk actions"), ("user.", "users and sign-ins"),
                              ("token.", "API tokens"), ("settings.", "settings"), ("group.", "action groups")]
                                .into_iter()
                                .map(|(value, label)| view! { <option value=value selected=move || prefix().as_deref().unwrap_or("") == value>{label}</option> })
                                .collect_view()}
                        </select>
                    </label>
                    <button type="submit">"Filter"</button>
                </form>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"Nothing recorded yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="audit">
                                <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Subject"</th><th>"Detail"</th></tr></thead>
                                <tbody>{list.into_iter().map(|entry| view! {
                                    <tr data-action=entry.action.clone()>
                                        <td>{when(&entry.at)}</td>
                                        <td>{entry.actor}</td>
                                        <td><code>{entry.action.clone()}</code></td>
                                        <td>{entry.subject}</td>
                                        <td>{entry.detail}</td>
                                    </tr>
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// What the settings page shows of a channel: its fields without the
/// `*_set` flag, as editable JSON, and whether a secret is stored.
fn channel_view(all: &serde_json::Value, channel: &str) -> (String, bool) {
    let mut fields = all.get(channel).cloned().unwrap_or(serde_json::Value::Null);
    let mut secret_set = false;
    if let Some(map) = fields.as_object_mut() {
        for flag in ["password_set", "token_set", "secret_access_key_set"] {
            secret_set |= map.remove(flag).and_then(|v| v.as_bool()).unwrap_or(false);
        }
    }
    let text = if fields.is_null() { String::new() } else { serde_json::to_string_pretty(&fields).unwrap_or_default() };
    (text, secret_set)
}

#[component]
pub fn IntegrationsPage() -> impl IntoView {
    use crate::admin_api::{integration_settings, GenerateDkimKey, SaveDkim, SaveIntegration, SaveSmtp};
    let smtp = ServerAction::<SaveSmtp>::new();
    let other = ServerAction::<SaveIntegration>::new();
    let dkim = ServerAction::<SaveDkim>::new();
    let generate = ServerAction::<GenerateDkimKey>::new();
    let settings = Resource::new(
        move || (smtp.version().get(), other.version().get(), dkim.version().get(), generate.version().get()),
        |_| integration_settings(),
    );
    let saved = move |version: usize, ok: bool| (version > 0 && ok).then(|| view! { <p class="notice" role="status">"Saved."</p> });
    view! {
        <Title text="Integrations"/>
        <section class="page">
            <div class="page-head"><h1>"Integrations"</h1></div>
            <p class="hint">"Where messages, uploads and pushes go. Passwords and tokens are stored on the server and never shown again: leave the field empty to keep the stored one."</p>
            {move || smtp.value().get().and_then(Result::err).or_else(|| other.value().get().and_then(Result::err))
                .or_else(|| dkim.value().get().and_then(Result::err)).or_else(|| generate.value().get().and_then(Result::err))
                .map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            {move || saved(smtp.version().get() + other.version().get() + dkim.version().get() + generate.version().get(),
                smtp.value().get().is_none_or(|r| r.is_ok()) && other.value().get().is_none_or(|r| r.is_ok())
                    && dkim.value().get().is_none_or(|r| r.is_ok()) && generate.value().get().is_none_or(|r| r.is_ok()))}
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let all: serde_json::Value = match settings.await {
                        Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
                        Err(err) => return view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    };
                    let current = all.get("smtp").cloned().unwrap_or_default();
                    let text = |key: &str| current.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                    let (host, username, from) = (text("host"), text("username"), text("from"));
                    let port = current.get("port").and_then(|v| v.as_u64()).unwrap_or(587);
                    let tls = text("tls");
                    let password_set = current.get("password_set").and_then(|v| v.as_bool()).unwrap_or(false);
                    let signing = dkim_section(&all, dkim, generate);
                    let channels = ["sms", "s3", "ftp", "crm", "http", "tracking"].map(|channel| {
                        let (fields, secret_set) = channel_view(&all, channel);
                        view! {
                            <details class="channel" data-channel=channel>
                                <summary>{channel.to_uppercase()} {if fields.is_empty() { " · not configured" } else { "" }}</summary>
                                <ActionForm action=other attr:class="stack">
                                    <input type="hidden" name="channel" value=channel/>
                                    {(channel == "tracking").then(|| view! {
                                        <p class="hint">"Opens and clicks for the whole installation: "
                                            <code>"{\"opens\": true, \"clicks\": true, \"scanner_secs\": 10}"</code>
                                            "; optional \"base_url\" (a tracking domain reaching this server) and \"unsubscribe_mailbox\" (List-Unsubscribe's mailto)."</p>
                                    })}
                                    {(channel == "sms").then(|| view! {
                                        <p class="hint">"Automatic calls use this account and its senders: add "
                                            <code>"\"voice\": {\"status_callback\": \"https://…/api/v1/channels/calls/status\"}"</code>
                                            " (optional \"url\" for TwiML when a step has no script, \"ring_secs\")."</p>
                                    })}
                                    <label>"Settings (JSON)" <textarea name="settings" rows="7">{super::textarea_text(fields)}</textarea></label>
                                    {(!matches!(channel, "http" | "tracking")).then(|| view! {
                                        <label>{if secret_set { "Secret (stored; empty keeps it)" } else { "Secret" }}
                                            <input type="password" name="secret" autocomplete="new-password"/>
                                        </label>
                                        <label class="check"><input type="checkbox" name="clear_secret" value="on"/> " Remove the stored secret"</label>
                                    })}
                                    {matches!(channel, "http" | "tracking").then(|| view! { <input type="hidden" name="secret" value=""/> })}
                                    <button type="submit">"Save " {channel.to_uppercase()}</button>
                                </ActionForm>
                            </details>
                        }
                    });
                    view! {
                        <h2>"Email (SMTP)"</h2>
                        <ActionForm action=smtp attr:class="stack smtp" attr:data-channel="smtp">
                            <label>"Host" <input name="host" value=host required/></label>
                            <label>"Port" <input type="number" name="port" min="1" max="65535" value=port required/></label>
                            <label>"Security"
                                <select name="tls">
                                    <option value="starttls" selected=tls == "starttls" || tls.is_empty()>"STARTTLS"</option>
                                    <option value="tls" selected=tls == "tls">"TLS (port 465)"</option>
                                    <option value="none" selected=tls == "none">"None (local relay only)"</option>
                                </select>
                            </label>
                            <label>"User name" <input name="username" value=username autocomplete="off"/></label>
                            <label>{if password_set { "Password (stored; empty keeps it)" } else { "Password" }}
                                <input type="password" name="password" autocomplete="new-password"/>
                            </label>
                            <label>"From" <input name="from" value=from placeholder="Waymark <news@example.com>" required/></label>
                            <button type="submit" class="primary">"Save SMTP"</button>
                        </ActionForm>
                        {signing}
                        <h2>"Other channels"</h2>
                        {channels.into_iter().collect_view()}
                    }.into_any()
                })}
            </Transition>
        </section>
    }
}

/// The DKIM form: domain, selector, algorithm, a write-only private key,
/// "generate a key", and the TXT record to publish.
fn dkim_section(
    all: &serde_json::Value,
    save: ServerAction<crate::admin_api::SaveDkim>,
    generate: ServerAction<crate::admin_api::GenerateDkimKey>,
) -> impl IntoView {
    let current = all.get("dkim").cloned().unwrap_or_default();
    let text = |key: &str| current.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let (domain, selector, algorithm) = (text("domain"), text("selector"), text("algorithm"));
    let key_set = current.get("private_key_set").and_then(|v| v.as_bool()).unwrap_or(false);
    let record = current.get("dns_record").cloned().unwrap_or_default();
    let shown = match (record.get("name").and_then(|v| v.as_str()), record.get("value").and_then(|v| v.as_str())) {
        (Some(name), Some(value)) => view! {
            <div class="dns-record" data-record="dkim">
                <p>"Publish this DNS record; outgoing mail is signed with this key:"</p>
                <dl>
                    <dt>"Type"</dt><dd><code>"TXT"</code></dd>
                    <dt>"Name"</dt><dd><code class="name">{name.to_owned()}</code></dd>
                    <dt>"Value"</dt><dd><code class="value">{value.to_owned()}</code></dd>
                </dl>
            </div>
        }
        .into_any(),
        _ => match record.get("problem").and_then(|v| v.as_str()) {
            Some(problem) => view! { <p class="notice error">{problem.to_owned()}</p> }.into_any(),
            None => view! { <p class="hint">"No key yet: paste one, or generate one below. Mail is not signed until there is."</p> }.into_any(),
        },
    };
    let option = |value: &'static str, label: &'static str, current: &str| {
        let selected = current == value || (current.is_empty() && value == "rsa-sha256");
        view! { <option value=value selected=selected>{label}</option> }
    };
    let ready = !domain.is_empty() && !selector.is_empty();
    let generator = ready.then(|| {
        let (domain, selector) = (domain.clone(), selector.clone());
        let (rsa, ed) = (option("rsa-sha256", "RSA-2048", &algorithm), option("ed25519-sha256", "Ed25519", &algorithm));
        view! {
            <ActionForm action=generate attr:class="inline-form generate-key">
                <input type="hidden" name="domain" value=domain/>
                <input type="hidden" name="selector" value=selector/>
                <select name="algorithm" aria-label="Key type">{rsa}{ed}</select>
                <button type="submit">{if key_set { "Generate a new key" } else { "Generate a key" }}</button>
            </ActionForm>
        }
    });
    let (rsa, ed) = (option("rsa-sha256", "RSA (SHA-256)", &algorithm), option("ed25519-sha256", "Ed25519 (SHA-256)", &algorithm));
    view! {
        <h2>"Email signing (DKIM)"</h2>
        <ActionForm action=save attr:class="stack dkim" attr:data-channel="dkim">
            <label>"Domain" <input name="domain" value=domain placeholder="example.com" required/></label>
            <label>"Selector" <input name="selector" value=selector placeholder="mail2026" required/></label>
            <label>"Algorithm" <select name="algorithm">{rsa}{ed}</select></label>
            <label>{if key_set { "Private key (stored; empty keeps it)" } else { "Private key (PEM), or leave empty and generate one" }}
                <textarea name="private_key" rows="4" autocomplete="off" spellcheck="false"></textarea>
            </label>
            <button type="submit" class="primary">"Save DKIM"</button>
        </ActionForm>
        {generator}
        {shown}
    }
}
