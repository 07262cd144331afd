"use strict";
// Stub of @matrix-org/matrix-sdk-crypto-nodejs for the interop tests (see package.json): every
// export matrix-bot-sdk 0.8 touches is present so `require` works, and using any of them throws,
// so an accidental use of end-to-end encryption fails loudly instead of doing nothing.

function unavailable(what) {
  return new Error(`${what}: end-to-end encryption is not available (interop-test stub of @matrix-org/matrix-sdk-crypto-nodejs)`);
}

function stubClass(name) {
  const cls = class {
    constructor() {
      throw unavailable(`new ${name}()`);
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return new Proxy(cls, {
    get(target, prop, receiver) {
      if (prop in target || typeof prop === "symbol") return Reflect.get(target, prop, receiver);
      return () => { throw unavailable(`${name}.${String(prop)}()`); };
    },
  });
}

for (const name of [
  "OlmMachine", "UserId", "DeviceId", "RoomId", "DeviceLists", "EncryptionSettings",
  "Attachment", "EncryptedAttachment", "KeysClaimRequest", "KeysQueryRequest", "KeysUploadRequest",
  "RoomMessageRequest", "SignatureUploadRequest", "ToDeviceRequest", "KeysBackupRequest",
]) {
  exports[name] = stubClass(name);
}

