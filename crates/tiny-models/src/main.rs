//! `make-tiny-model RECIPE OUT.gguf`: writes one of the programmed test models, or a model of
//! a real shape with random weights for benchmarks.

use std::process::ExitCode;

use tiny_models::random_weights::{random_recipe, RANDOM_RECIPE_NAMES};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let recipes = || [tiny_models::RECIPE_NAMES, RANDOM_RECIPE_NAMES].concat().join(", ");
    let [recipe_name, output_path] = arguments.as_slice() else {
        eprintln!("usage: make-tiny-model RECIPE OUT.gguf   (recipes: {})", recipes());
        return ExitCode::from(2);
    };
    let bytes = if let Some(recipe) = tiny_models::recipe(recipe_name) {
        recipe.to_gguf()
    } else if let Some(recipe) = random_recipe(recipe_name) {
        recipe.to_gguf()
    } else {
        eprintln!("unknown recipe {recipe_name:?} (recipes: {})", recipes());
        return ExitCode::from(2);
    };
    let bytes = match bytes {
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
