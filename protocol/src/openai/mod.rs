//! OpenAI
