; config_dictionary.lisp -- the "Generators and their settings" snippet of docs/guide.md, applied to a generator.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; This block is about the API, so it runs on a tiny random transformer (fast; its text is noise).
; The guide's GPT-2 ids (eos 50256, pad 50257) lie outside this model's vocabulary of 49152: that is a
; warning on stderr (the EOS can never be produced), not an error.

(use 'lispe_torch)

; [added] what the block assumes: a model, a tokenizer to read its output, a generator and a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":7}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_encode "The weather today is")))

(setq config (
    ("max_length" 50)           ; Maximum generation length
    ("temperature" 0.8)         ; Sampling temperature (0.1-2.0)
    ("top_k" 40)               ; Top-K sampling parameter
    ("top_p" 0.9)              ; Top-P (nucleus) sampling parameter  
    ("strategy" "greedy")       ; Generation strategy
    ("repetition_penalty" 1.1)  ; Repetition penalty (>1.0)
    ("eos_token_id" 50256)     ; End-of-sequence token ID
    ("pad_token_id" 50257)     ; Padding token ID
    ("do_sample" true)         ; Enable sampling vs deterministic
))

; [added] apply the dictionary, show the generator, generate with its strategy
(torch_generator_config generator config)
(println "Configured:" generator)
(setq result (torch_generate generator input_tokens))
(println "Generated" (- (size result) (size input_tokens)) "new tokens (greedy, random weights):")
(println (tokenizer_decode result))
(println "Settings:" (torch_generator_info generator))
