//! What an invocation expands to when it has errors: the user's function, untouched but for the argument
//! attributes rustc would reject, plus every error. IDEs keep seeing the function; the build fails only on the
//! reported problems.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, Item, ItemFn};

use crate::ast::is_field_attr;

/// The function without the argument attributes that only the generated struct understands.
pub fn strip_argument_attrs(item: &ItemFn) -> ItemFn {
    let mut item = item.clone();
    for arg in &mut item.sig.inputs {
        if let FnArg::Typed(typed) = arg {
            typed.attrs.retain(|attr| !is_field_attr(attr));
        }
    }
    item
}

pub fn function(item: &ItemFn, errors: Vec<syn::Error>) -> TokenStream {
    let mut tokens = strip_argument_attrs(item).into_token_stream();
    tokens.extend(errors.into_iter().map(|e| e.into_compile_error()));
    tokens
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
