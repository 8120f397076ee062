//! What an invocation expands to when it has errors: the user's function, untouched but for the argument
//! attributes rustc would reject, plus every error. IDEs keep seeing the function; the build fails only on the
//! reported problems.

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{FnArg, Item, ItemFn};

use crate::ast::{Function, ParamKind, is_arg_marker, is_field_attr};

/// The function without the argument attributes that only the generated struct understands, nor a `#[cfg_attr]`
/// (refused: it may add them).
pub fn strip_argument_attrs(item: &ItemFn) -> ItemFn {
    let mut item = item.clone();
    for arg in &mut item.sig.inputs {
        if let FnArg::Typed(typed) = arg {
            typed.attrs.retain(|attr| {
                !is_field_attr(attr) && !is_arg_marker(attr) && !attr.path().is_ident("cfg_attr")
            });
        }
    }
    item
}

/// The function as written, a stub of the tool type (so registering the tool, `.tool::<name>()`, adds no error
/// of its own), and the errors.
pub fn function(item: &ItemFn, errors: Vec<syn::Error>) -> TokenStream {
    let mut tokens = strip_argument_attrs(item).into_token_stream();
    tokens.extend(stub(item));
    tokens.extend(errors.into_iter().map(|e| e.into_compile_error()));
    tokens
}

/// A tool type that implements the runtime traits for any state and is never called: the build fails on the
/// reported errors anyway.
fn stub(item: &ItemFn) -> TokenStream {
    // A method is inside an `impl` block, where no type can be declared: the receiver error says it all.
    if matches!(item.sig.inputs.first(), Some(FnArg::Receiver(_))) {
        return TokenStream::new();
    }
    let private = quote!(::secure_tools::__private);
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let name = ident.to_string();
    let (arguments, args_ty) = stub_arguments(item);
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        const _: () = {
            #arguments

            impl #private::ToolInput for #ident {
                type Args = #private::Stub<#args_ty>;
            }

            impl<__S> #private::SecureTool<__S> for #ident {
                const META: #private::ToolMeta = #private::ToolMeta::stub(#name);
                type Output = ::std::string::String;

                fn invoke(
                    _: <Self as #private::ToolInput>::Args,
                    _: &#private::CallContext,
                    _: &__S,
                ) -> impl #private::Future<
                    Output = #private::Result<#private::ToolOutput, #private::ToolError>,
                > + #private::Send + 'static {
                    async { ::core::unreachable!("a tool whose attribute has errors never compiles") }
                }
            }
        };
    }
}

/// What the stub's arguments dereference to, so that an argument rule reading `args.id` through `ArgsOf<tool>`
/// reports nothing of its own: the `T` of an `Args<T>`, or a struct with a public field per argument, as the
/// attribute would make without its errors (but no derive, whose own errors would be follow-ons). Left out are
/// the arguments whose type cannot be a field here (a reference, `impl Trait`, `_`: each already an error of its
/// own), and everything for a generic function, whose arguments may name its parameters.
fn stub_arguments(item: &ItemFn) -> (TokenStream, TokenStream) {
    if !item.sig.generics.params.is_empty() || item.sig.generics.where_clause.is_some() {
        return (TokenStream::new(), quote!(()));
    }
    let function = Function::from_item(item);
    let whole = function.params.iter().find_map(|param| match param.kind {
        ParamKind::Args { inner, .. } => Some(inner),
        _ => None,
    });
    if let Some(inner) = whole {
        return match inner {
            Some(inner) if can_be_field(inner) => (TokenStream::new(), quote!(#inner)),
            _ => (TokenStream::new(), quote!(())),
        };
    }
    let fields = function
        .named_inputs()
        .filter(|(_, ty, _)| can_be_field(ty))
        .map(|(ident, ty, _)| quote!(pub #ident: #ty,));
    let name = crate::expand::args_struct_name(&item.sig.ident);
    let arguments = quote! {
        #[allow(non_camel_case_types, dead_code, missing_docs)]
        pub struct #name {
            #(#fields)*
        }
    };
    (arguments, quote!(#name))
}

/// Whether a type can be a field of a struct without lifetimes or generics: no reference, lifetime, `impl`,
/// `dyn`, `Self` or `_` anywhere in it.
fn can_be_field(ty: &syn::Type) -> bool {
    fn clean(tokens: TokenStream) -> bool {
        tokens.into_iter().all(|token| match token {
            TokenTree::Group(group) => clean(group.stream()),
            TokenTree::Punct(punct) => !matches!(punct.as_char(), '&' | '\''),
            TokenTree::Ident(ident) => {
                !(ident == "impl" || ident == "dyn" || ident == "Self" || ident == "_")
            }
            TokenTree::Literal(_) => true,
        })
    }
    clean(ty.to_token_stream())
}

/// The error for an item that is not a function, on its keyword and name.
pub fn not_a_function(item: &TokenStream) -> syn::Error {
    let (what, tokens) = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(s)) => (Some("a struct"), pair(&s.struct_token, &s.ident)),
        Ok(Item::Enum(e)) => (Some("an enum"), pair(&e.enum_token, &e.ident)),
        Ok(Item::Union(u)) => (Some("a union"), pair(&u.union_token, &u.ident)),
        Ok(Item::Trait(t)) => (Some("a trait"), pair(&t.trait_token, &t.ident)),
        Ok(Item::Impl(i)) => (Some("an impl block"), pair(&i.impl_token, &i.self_ty)),
        Ok(Item::Mod(m)) => (Some("a module"), pair(&m.mod_token, &m.ident)),
        Ok(Item::Const(c)) => (Some("a constant"), pair(&c.const_token, &c.ident)),
        Ok(Item::Static(s)) => (Some("a static"), pair(&s.static_token, &s.ident)),
        Ok(Item::Type(t)) => (Some("a type alias"), pair(&t.type_token, &t.ident)),
        Ok(Item::Use(u)) => (Some("an import"), u.into_token_stream()),
        // A function without a body, such as a trait method's declaration, or something unknown to syn.
        _ => (None, item.clone()),
    };
    match what {
        Some(what) => syn::Error::new_spanned(
            tokens,
            format_args!("`#[secure_tool]` applies to an `async fn`, not to {what}"),
        ),
        None => syn::Error::new_spanned(
            tokens,
            "`#[secure_tool]` applies to an `async fn` with a body",
        ),
    }
}

fn pair(keyword: &dyn ToTokens, name: &dyn ToTokens) -> TokenStream {
    let mut tokens = keyword.to_token_stream();
    name.to_tokens(&mut tokens);
    tokens
}

/// The item did not parse as a function: leave it as it was and say so.
pub fn unparsed(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens
}
