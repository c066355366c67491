; usecase_translation.lisp -- the "Translation" config of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment apply the config (beam
; search, 4 beams) and translate a sentence.

(use 'lispe_torch)

; [added] the generator the config is for
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

(setq config (
    ("max_length" 100)
    ("temperature" 0.3)
    ("strategy" "beam_search")
    ("repetition_penalty" 1.0)
))

; [added]
(torch_generator_config generator config)
(setq sentence "The weather is nice today.")
(setq prompt (tokenizer_chat (list (list "user" (+ "Translate to French: " sentence)))))
(println "English:" sentence)
(println "French: " (torch_generate_text generator prompt))
