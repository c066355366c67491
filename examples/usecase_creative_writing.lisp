; usecase_creative_writing.lisp -- the "Creative writing" config of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment apply the config and write
; the start of a story, streamed token by token through a callback. The guide's 200 tokens hold;
; the demo caps this one call at 60 new tokens (per-call config) so it finishes in seconds on a CPU.

(use 'lispe_torch)

; [added] the generator the config is for
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

(setq config (
    ("max_length" 200)
    ("temperature" 1.0)
    ("top_k" 50)
    ("strategy" "top_k") 
    ("repetition_penalty" 1.05)
))

; [added]
(torch_generator_config generator config)
(println generator)
(setq prompt (tokenizer_chat '(("user" "Write the opening lines of a story about a lighthouse keeper."))))
(torch_generate_text generator prompt
    {"max_length":60 "seed":5 "callback":(lambda (id piece) (print piece))})
(println)
