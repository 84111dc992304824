//! `make-tiny-model RECIPE OUT.gguf`: writes one of the programmed test models.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [recipe_name, output_path] = arguments.as_slice() else {
        eprintln!("usage: make-tiny-model RECIPE OUT.gguf   (recipes: {})", tiny_models::RECIPE_NAMES.join(", "));
        return ExitCode::from(2);
    };
    let Some(recipe) = tiny_models::recipe(recipe_name) else {
        eprintln!("unknown recipe {recipe_name:?} (recipes: {})", tiny_models::RECIPE_NAMES.join(", "));
        return ExitCode::from(2);
    };
    let bytes = match recipe.to_gguf() {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(output_path, bytes) {
        eprintln!("writing {output_path}: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
