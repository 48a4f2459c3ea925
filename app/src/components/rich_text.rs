//! A plain rich-text editor for the agent's email: an editable area and a
//! small toolbar (bold, italic, link, bulleted list, numbered list), with
//! Ctrl+B and Ctrl+I. The browser's own editing (`contenteditable` and its
//! commands) does the work; the HTML it makes is kept in a signal and
//! sanitised by the server when previewed and when sent.
//!
//! What the page puts into the area is HTML the server sanitised already
//! (the step's draft, a saved template); what is pasted goes in as plain
//! text, so no markup from elsewhere enters the page's DOM.

use leptos::prelude::*;

/// A formatting command of the toolbar, as the browser's editing names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Bold,
    Italic,
    Link,
    Bullets,
    Numbers,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Bold, Format::Italic, Format::Link, Format::Bullets, Format::Numbers];

    /// The browser's command (`document.execCommand`).
    pub fn command(self) -> &'static str {
        match self {
            Format::Bold => "bold",
            Format::Italic => "italic",
            Format::Link => "createLink",
            Format::Bullets => "insertUnorderedList",
            Format::Numbers => "insertOrderedList",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Format::Bold => "B",
            Format::Italic => "I",
            Format::Link => "Link",
            Format::Bullets => "• List",
            Format::Numbers => "1. List",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Format::Bold => "Bold (Ctrl+B)",
            Format::Italic => "Italic (Ctrl+I)",
            Format::Link => "Link the selected words",
            Format::Bullets => "Bulleted list",
            Format::Numbers => "Numbered list",
        }
    }

    /// The format a shortcut asks for: Ctrl (or ⌘) with B or I.
    pub fn shortcut(key: &str, ctrl: bool) -> Option<Format> {
        match (ctrl, key.to_ascii_lowercase().as_str()) {
            (true, "b") => Some(Format::Bold),
            (true, "i") => Some(Format::Italic),
            _ => None,
        }
    }
}

/// The editor. `html` holds what is in the area; setting it from outside
/// (a template inserted) replaces the area's content.
#[component]
pub fn RichText(html: RwSignal<String>, #[prop(into)] label: String, #[prop(into)] id: String) -> impl IntoView {
    let area = NodeRef::<leptos::html::Div>::new();
    // What the area holds as far as the signal knows: an outside change
    // differs from it and is written into the area; typing is not.
    let shown = StoredValue::new(html.get_untracked());
    let initial = html.get_untracked();
    #[cfg(feature = "hydrate")]
    {
        Effect::new(move || {
            let wanted = html.get();
            if let Some(el) = area.get() {
                if shown.get_value() != wanted {
                    if el.inner_html() != wanted {
                        el.set_inner_html(&wanted);
                    }
                    shown.set_value(wanted);
                }
            }
        });
    }
    let read_back = move || {
        if let Some(el) = area.get_untracked() {
            let now = el.inner_html();
            shown.set_value(now.clone());
            html.set(now);
        }
    };
    let apply = move |format: Format| {
        run(format);
        read_back();
    };
    view! {
        <div class="rich-text">
            <div class="toolbar" role="toolbar" aria-label=format!("{label} formatting")>
                {Format::ALL.into_iter().map(|format| view! {
                    <button type="button" class="format" data-format=format.command() title=format.title() aria-label=format.title()
                        // Keep the selection in the area: the button must not take the focus.
                        on:mousedown=move |ev| ev.prevent_default()
                        on:click=move |_| apply(format)>
                        {format.label()}
                    </button>
                }).collect_view()}
            </div>
            <div class="editable" id=id node_ref=area contenteditable="true" role="textbox" aria-multiline="true" aria-label=label.clone()
                inner_html=initial
                on:input=move |_| read_back()
                on:blur=move |_| read_back()
                on:keydown=move |ev| {
                    if let Some(format) = Format::shortcut(&ev.key(), ev.ctrl_key() || ev.meta_key()) {
                        ev.prevent_default();
                        ev.stop_propagation();
                        apply(format);
                    }
                }
                on:paste=move |ev| {
                    ev.prevent_default();
                    paste_text(&ev);
                    read_back();
                }>
            </div>
        </div>
    }
}

/// The address a typed link goes to: http(s), mailto or tel as typed, a
/// bare `example.com/x` as https; anything else (`javascript:`, `data:`)
/// makes no link at all.
pub fn link_address(typed: &str) -> Option<String> {
    let url = typed.trim();
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || "+-".contains(c)));
    match scheme.as_deref() {
        _ if url.is_empty() || url.chars().any(char::is_whitespace) => None,
        Some("http" | "https" | "mailto" | "tel") => Some(url.to_owned()),
        Some(_) => None,
        None => Some(format!("https://{url}")),
    }
}

/// Runs a toolbar command on the selection (a link asks for its address).
#[cfg(feature = "hydrate")]
fn run(format: Format) {
    use wasm_bindgen::JsCast;
    let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() else { return };
    if format == Format::Link {
        let Ok(Some(typed)) = window().prompt_with_message("Link address (https://…)") else { return };
        if let Some(url) = link_address(&typed) {
            let _ = doc.exec_command_with_show_ui_and_value(format.command(), false, &url);
        }
        return;
    }
    let _ = doc.exec_command(format.command());
}

#[cfg(not(feature = "hydrate"))]
fn run(_: Format) {}

/// What is pasted goes in as plain text.
#[cfg(feature = "hydrate")]
fn paste_text(ev: &web_sys::ClipboardEvent) {
    use wasm_bindgen::JsCast;
    let text = ev.clipboard_data().and_then(|data| data.get_data("text/plain").ok()).unwrap_or_default();
    if let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() {
        let _ = doc.exec_command_with_show_ui_and_value("insertText", false, &text);
    }
}

#[cfg(not(feature = "hydrate"))]
fn paste_text(_: &leptos::ev::ClipboardEvent) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_b_and_ctrl_i_are_bold_and_italic() {
        assert_eq!(Format::shortcut("b", true), Some(Format::Bold));
        assert_eq!(Format::shortcut("I", true), Some(Format::Italic));
        assert_eq!(Format::shortcut("b", false), None);
        assert_eq!(Format::shortcut("u", true), None);
        let commands: Vec<&str> = Format::ALL.iter().map(|f| f.command()).collect();
        assert_eq!(commands, ["bold", "italic", "createLink", "insertUnorderedList", "insertOrderedList"]);
    }

    #[test]
    fn links_go_to_web_mail_or_phone_addresses_only() {
        assert_eq!(link_address(" https://example.com/plan ").as_deref(), Some("https://example.com/plan"));
        assert_eq!(link_address("mailto:a@b.test").as_deref(), Some("mailto:a@b.test"));
        assert_eq!(link_address("example.com/x").as_deref(), Some("https://example.com/x"));
        assert_eq!(link_address("example.com:8080/x").as_deref(), Some("https://example.com:8080/x"));
        for bad in ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x", "vbscript:x", "", "a b"] {
            assert_eq!(link_address(bad), None, "{bad}");
        }
    }
}
