use secure_tools::secure_tool;

#[derive(Debug)]
struct LookupError;

/// Looks a word up.
#[secure_tool(scope = "dictionary.read")]
async fn lookup(word: String) -> Result<String, LookupError> {
    Ok(word)
}

fn main() {
    // Registering the tool adds no error of its own: the attribute's are the only ones.
    let _ = secure_tools::ToolSet::builder(()).tool::<lookup>();
}
