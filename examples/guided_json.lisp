; guided_json.lisp -- JSON-schema-constrained generation on SmolLM2-135M-Instruct.
; model: smollm2
;
; The "json_schema" config key keeps the model's output inside a JSON schema: whatever the model
; prefers, every token it may choose keeps the text a valid prefix of a document of that schema, and
; generation stops as soon as the document is complete. The answer therefore always parses.

(use 'lispe_torch)

(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

; a schema written as JSON text (a backquoted string needs no escapes), read into a dictionary
(setq schema (json_parse `{"type": "object",
  "properties": {"city": {"type": "string", "maxLength": 20},
                 "country": {"type": "string", "maxLength": 20},
                 "population_millions": {"type": "integer"}},
  "required": ["city", "country", "population_millions"]}`))

(setq prompt (tokenizer_chat '(("user" "Describe Paris as a JSON object with its city, country and population in millions."))))
(setq answer (torch_generate_text generator prompt {"json_schema":schema "max_length":60}))

(println "JSON answer:" answer)
(setq data (json_parse answer))
(println "Parsed: city =" (@ data "city") "| country =" (@ data "country")
         "| population_millions =" (@ data "population_millions"))

; the constraint is part of the active processor chain (after the user's processors)
(torch_generator_config generator {"json_schema":schema})
(println "Chain starts with:" (left (torch_generator_chain generator) 30) "...")

; a regular expression works the same way: an ISO date
(setq date (torch_generate_text generator (tokenizer_chat '(("user" "When did the French Revolution start? Give the date."))) {"regex":"[0-9]{4}-[0-9]{2}-[0-9]{2}" "max_length":12 "json_schema":nil}))
(println "Date (regex [0-9]{4}-[0-9]{2}-[0-9]{2}):" date)
