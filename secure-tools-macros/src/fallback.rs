//! What an invocation expands to when it has errors: the user's function, untouched but for the argument
//! attributes rustc would reject, plus every error. IDEs keep seeing the function; the build fails only on the
//! reported problems.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{FnArg, Item, ItemFn};

use crate::ast::{is_arg_marker, is_field_attr};

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
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        const _: () = {
            impl #private::ToolInput for #ident {
                type Args = #private::Stub;
            }

            impl<__S> #private::SecureTool<__S> for #ident {
                const META: #private::ToolMeta = #private::ToolMeta::stub(#name);
                type Output = ::std::string::String;

                fn invoke(
                    _: #private::Stub,
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
