//! A borrowed view of the annotated function: its parameters sorted into arguments and context, its docs and its
//! result type, each keeping the original tokens for spans.

use proc_macro2::TokenStream;
use syn::{Attribute, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// The context parameter types the runtime fills from the call, by the last segment of their path. A parameter
/// marked `#[arg]` is an argument whatever its type's name.
pub const CONTEXT_TYPES: &[&str] = &[
    "Caller",
    "RequestId",
    "CallId",
    "CallContext",
    "State",
    "CancellationToken",
    "Progress",
    "ClientLog",
    "Elicitation",
    "Sampling",
    "Meta",
];

pub struct Function<'a> {
    pub original: &'a ItemFn,
    /// The description, an expression of type `&'static str`.
    pub docs: Option<TokenStream>,
    pub params: Vec<Param<'a>>,
    pub output: Output<'a>,
}

pub struct Param<'a> {
    pub original: &'a FnArg,
    pub kind: ParamKind<'a>,
}

pub enum ParamKind<'a> {
    /// `self`: never valid.
    Receiver,
    /// An argument in the input schema: `#[validate(..)] name: Type`.
    Input {
        ident: Option<&'a Ident>,
        pat: &'a Pat,
        ty: &'a Type,
        attrs: &'a [Attribute],
    },
    /// `Args(args): Args<T>`: the whole input is `T`.
    Args {
        inner: Option<&'a Type>,
        ty: &'a Type,
        attrs: &'a [Attribute],
    },
    /// `Caller`, `RequestId`, `CallContext`, `State<T>`, ...: see [`CONTEXT_TYPES`].
    Context {
        ty: &'a Type,
        attrs: &'a [Attribute],
    },
}

pub struct Output<'a> {
    /// The success type: `T` of `Result<T, E>`, or the whole type.
    pub ok: Option<&'a Type>,
    /// Whether the declared type is a `Result`.
    pub is_result: bool,
    /// The declared type, if any.
    pub declared: Option<&'a Type>,
    /// `E` of `Result<T, E>`, when written out.
    pub err: Option<&'a Type>,
}

impl<'a> Function<'a> {
    pub fn from_item(item: &'a ItemFn) -> Self {
        Function {
            original: item,
            docs: docs(&item.attrs),
            params: item.sig.inputs.iter().map(Param::from_arg).collect(),
            output: Output::from_return(&item.sig.output),
        }
    }

    pub fn inputs(&self) -> impl Iterator<Item = &Param<'a>> {
        self.params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Input { .. }))
    }

    /// The arguments that have a name (one without is reported as such): name, type and attributes.
    pub fn named_inputs(
        &self,
    ) -> impl Iterator<Item = (&'a Ident, &'a Type, &'a [Attribute])> + '_ {
        self.params.iter().filter_map(|param| match param.kind {
            ParamKind::Input {
                ident: Some(ident),
                ty,
                attrs,
                ..
            } => Some((ident, ty, attrs)),
            _ => None,
        })
    }
}

impl<'a> Param<'a> {
    fn from_arg(arg: &'a FnArg) -> Self {
        let kind = match arg {
            FnArg::Receiver(_) => ParamKind::Receiver,
            FnArg::Typed(typed) => {
                let ty = &*typed.ty;
                let input = || ParamKind::Input {
                    ident: match &*typed.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
                        _ => None,
                    },
                    pat: &typed.pat,
                    ty,
                    attrs: &typed.attrs,
                };
                match last_segment(ty) {
                    _ if typed.attrs.iter().any(is_arg_marker) => input(),
                    Some((name, _)) if CONTEXT_TYPES.contains(&name.as_str()) => {
                        ParamKind::Context {
                            ty,
                            attrs: &typed.attrs,
                        }
                    }
                    Some((name, args)) if name == "Args" => ParamKind::Args {
                        inner: args,
                        ty,
                        attrs: &typed.attrs,
                    },
                    _ => input(),
                }
            }
        };
        Param {
            original: arg,
            kind,
        }
    }
}

impl<'a> Output<'a> {
    fn from_return(ret: &'a ReturnType) -> Self {
        let declared = match ret {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        let result_ok = declared.and_then(|ty| match last_segment(ty) {
            Some((name, first)) if name == "Result" => first,
            _ => None,
        });
        let err = declared
            .filter(|_| result_ok.is_some())
            .and_then(|ty| match ungroup(ty) {
                Type::Path(path) => match &path.path.segments.last()?.arguments {
                    PathArguments::AngleBracketed(args) => args
                        .args
                        .iter()
                        .filter_map(|arg| match arg {
                            GenericArgument::Type(ty) => Some(ty),
                            _ => None,
                        })
                        .nth(1),
                    _ => None,
                },
                _ => None,
            });
        Output {
            ok: result_ok.or(declared),
            is_result: result_ok.is_some(),
            declared,
            err,
        }
    }

    /// Whether the success type is sent as text (`String`, `&str`, `()`), is already `Json<_>`, `Rendered<_>` or
    /// `ContentBlocks`, or is rmcp's own result or content (`CallToolResult`, `ContentBlock`, `Vec<ContentBlock>`),
    /// rather than wrapped in `Json` for structured content. rmcp's types serialize: wrapped, an error result
    /// would have become the structured content of a success.
    pub fn is_plain(&self) -> bool {
        const AS_THEY_ARE: [&str; 6] = [
            "String",
            "Json",
            "Rendered",
            "ContentBlocks",
            "CallToolResult",
            "ContentBlock",
        ];
        match self.ok.map(ungroup) {
            None => true,
            Some(Type::Tuple(t)) => t.elems.is_empty(),
            Some(Type::Reference(r)) => {
                matches!(ungroup(&r.elem), Type::Path(p) if p.path.is_ident("str"))
            }
            Some(ty) => match last_segment(ty) {
                Some((name, _)) if AS_THEY_ARE.contains(&name.as_str()) => true,
                Some((name, Some(item))) if name == "Vec" => {
                    matches!(last_segment(item), Some((item, _)) if item == "ContentBlock")
                }
                _ => false,
            },
        }
    }
}

/// The name of a type's last path segment, for messages.
pub fn type_name(ty: &Type) -> Option<String> {
    last_segment(ty).map(|(name, _)| name)
}

/// The type inside the invisible group a `macro_rules!` metavariable (`$t:ty`) arrives in, or inside parentheses.
pub fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// The last path segment's name and its first generic type argument.
pub fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let first = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        }),
        _ => None,
    };
    Some((segment.ident.to_string(), first))
}

/// The description: the doc comments as rustdoc reads them (`///` lines with one leading space dropped, a
/// `/** */` block without its margin of `*`), outer blank lines trimmed, and a `#[doc = concat!(..)]` or
/// `#[doc = include_str!(..)]` in its place: then the expression is a `concat!` of the pieces.
pub fn docs(attrs: &[Attribute]) -> Option<TokenStream> {
    enum Piece<'a> {
        Line(String),
        Macro(&'a syn::Expr),
    }
    let mut pieces = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("doc")) {
        let syn::Meta::NameValue(nv) = &attr.meta else {
            continue;
        };
        match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => pieces.extend(doc_lines(&s.value()).into_iter().map(Piece::Line)),
            other => pieces.push(Piece::Macro(other)),
        }
    }
    let blank =
        |piece: Option<&Piece>| matches!(piece, Some(Piece::Line(line)) if line.trim().is_empty());
    while blank(pieces.first()) {
        pieces.remove(0);
    }
    while blank(pieces.last()) {
        pieces.pop();
    }
    if pieces.is_empty() {
        return None;
    }
    if pieces.iter().all(|piece| matches!(piece, Piece::Line(_))) {
        let lines: Vec<&str> = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Line(line) => line.as_str(),
                Piece::Macro(_) => "",
            })
            .collect();
        let text = lines.join("\n").trim().to_owned();
        return Some(quote::quote!(#text));
    }
    // Each piece is a line of its own, as rustdoc joins doc attributes.
    let mut parts = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            parts.push(quote::quote!("\n"));
        }
        parts.push(match piece {
            Piece::Line(line) => quote::quote!(#line),
            Piece::Macro(expr) => quote::quote!(#expr),
        });
    }
    Some(quote::quote!(::core::concat!(#(#parts),*)))
}

/// The lines of one doc attribute's text. A block comment's (`/** .. */`) first and last lines hold only what
/// follows `/**` and precedes `*/`, and its lines may start with a margin of `*`: both are dropped, as rustdoc does.
fn doc_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > 1 {
        let decoration = |line: &str| line.trim().chars().all(|c| c == '*');
        if lines.first().is_some_and(|line| decoration(line)) {
            lines.remove(0);
        }
        if lines.last().is_some_and(|line| decoration(line)) {
            lines.pop();
        }
        if !lines.is_empty() && lines.iter().all(|line| line.trim_start().starts_with('*')) {
            lines = lines.iter().map(|line| &line.trim_start()[1..]).collect();
        }
    }
    lines
        .into_iter()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned())
        .collect()
}

/// `#[arg]`: the parameter is an argument, even if its type is named like a context type (`State`, `Caller`, ...).
pub fn is_arg_marker(attr: &Attribute) -> bool {
    attr.path().is_ident("arg")
}

/// A lint attribute (`#[allow(..)]`, ...), which rustc takes on a parameter: it stays on the function's.
pub fn is_lint_attr(attr: &Attribute) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|name| attr.path().is_ident(name))
}

/// Whether an attribute on a parameter belongs to the generated argument struct. `#[deprecated]`, which rustc
/// refuses on a parameter, is the field's: schemars marks its property `deprecated`.
pub fn is_field_attr(attr: &Attribute) -> bool {
    ["validate", "serde", "schemars", "doc", "deprecated"]
        .iter()
        .any(|name| attr.path().is_ident(name))
}

/// How an inline argument meets the client.
pub enum Wire {
    /// Sent under this name: `#[serde(rename = "..")]` (or `rename(deserialize = "..")`), else the parameter's name.
    Named(String),
    /// `#[serde(flatten)]`: its fields are the arguments.
    Flattened,
    /// `#[serde(skip)]` or `skip_deserializing`: not sent at all.
    Skipped,
}

/// The name an argument is sent under, as serde decodes it (see [`Wire`]).
pub fn wire(ident: &Ident, attrs: &[Attribute]) -> Wire {
    use syn::ext::IdentExt as _;
    let mut wire = Wire::Named(ident.unraw().to_string());
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("flatten") {
                wire = Wire::Flattened;
            } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_deserializing") {
                wire = Wire::Skipped;
            } else if meta.path.is_ident("rename") {
                if meta.input.peek(syn::Token![=]) {
                    let name: syn::LitStr = meta.value()?.parse()?;
                    if let Wire::Named(current) = &mut wire {
                        *current = name.value();
                    }
                    return Ok(());
                }
                return meta.parse_nested_meta(|inner| {
                    if inner.path.is_ident("deserialize") {
                        let name: syn::LitStr = inner.value()?.parse()?;
                        if let Wire::Named(current) = &mut wire {
                            *current = name.value();
                        }
                        Ok(())
                    } else {
                        crate::attr::skip_value(&inner)
                    }
                });
            }
            crate::attr::skip_value(&meta)
        });
    }
    wire
}

/// Whether the parameter's own attributes say how validator treats its type's rules: checked already
/// (`#[validate(nested)]`), or not at all (`#[validate(skip)]`, `#[validate(nested = false)]`).
pub fn skips_nested(attrs: &[Attribute]) -> bool {
    let mut said = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("validate")) {
        let _ = attr.parse_nested_meta(|meta| {
            said |= meta.path.is_ident("nested") || meta.path.is_ident("skip");
            crate::attr::skip_value(&meta)
        });
    }
    said
}

/// `T` of `Box<T>`, `Arc<T>` or `Rc<T>`, by name, else none.
pub fn pointer_inner(ty: &Type) -> Option<&Type> {
    match last_segment(ty) {
        Some((name, inner)) if ["Box", "Arc", "Rc"].contains(&name.as_str()) => inner,
        _ => None,
    }
}

/// `T` of `Option<T>` (by the last segment's name, as serde's and validator's derives tell it), else none.
pub fn option_inner(ty: &Type) -> Option<&Type> {
    match last_segment(ty) {
        Some((name, inner)) if name == "Option" => inner,
        _ => None,
    }
}

/// Whether the type is a map by its name (`HashMap`, `BTreeMap`, `IndexMap`, serde_json's `Map` or `Value`), seen
/// through `Option`.
pub fn is_map(ty: &Type) -> bool {
    let ty = option_inner(ty).unwrap_or(ty);
    type_name(ty).is_some_and(|name| {
        ["HashMap", "BTreeMap", "IndexMap", "Map", "Value"].contains(&name.as_str())
    })
}
