// A DeviceKeyStore over the Secure Enclave: the P-256 key is made inside the
// enclave and never leaves it; the Keychain holds only the enclave's opaque,
// device-bound handle to it. Signing asks for Face ID / Touch ID (or the
// passcode) each time.
import CryptoKit
import Foundation
import LocalAuthentication
import Security

public final class SecureEnclaveKeyStore: DeviceKeyStore, Sendable {
    private let service: String

    /// `service` names the Keychain items; keep it stable across versions.
    public init(service: String = "io.countersign.device-keys") {
        self.service = service
    }

    public func createKey(alias: String) throws -> Data {
        guard SecureEnclave.isAvailable else {
            throw DeviceKeyError.Unavailable(reason: "this device has no Secure Enclave")
        }
        var failure: Unmanaged<CFError>?
        guard let access = SecAccessControlCreateWithFlags(
            nil,
            kSecAttrAccessibleWhenUnlockedThisDeviceOnly,
            [.privateKeyUsage, .userPresence],
            &failure
        ) else {
            throw DeviceKeyError.Unavailable(reason: "access control: \(String(describing: failure?.takeRetainedValue()))")
        }
        do {
            let key = try SecureEnclave.P256.Signing.PrivateKey(accessControl: access)
            try deleteKey(alias: alias)
            try store(key.dataRepresentation, alias: alias)
            // x9.63 form of a P-256 public key: 0x04 || X || Y, 65 bytes.
            return key.publicKey.x963Representation
        } catch let error as DeviceKeyError {
            throw error
        } catch {
            throw DeviceKeyError.Unavailable(reason: "creating the key failed: \(error)")
        }
    }

    public func sign(alias: String, message: Data) throws -> Data {
        let handle = try load(alias: alias)
        do {
            let key = try SecureEnclave.P256.Signing.PrivateKey(dataRepresentation: handle)
            // Hashes with SHA-256; DER is what the Countersign protocol carries.
            return try key.signature(for: message).derRepresentation
        } catch let error as LAError where [.userCancel, .appCancel, .systemCancel].contains(error.code) {
            throw DeviceKeyError.Cancelled
        } catch {
            throw DeviceKeyError.Unavailable(reason: "signing failed: \(error)")
        }
    }

    public func deleteKey(alias: String) throws {
        let status = SecItemDelete(query(alias: alias) as CFDictionary)
        guard status == errSecSuccess || status == errSecItemNotFound else {
            throw DeviceKeyError.Unavailable(reason: "Keychain error \(status)")
        }
    }

    private func query(alias: String) -> [String: Any] {
        [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: alias,
        ]
    }

    private func store(_ handle: Data, alias: String) throws {
        var item = query(alias: alias)
        item[kSecValueData as String] = handle
        item[kSecAttrAccessible as String] = kSecAttrAccessibleWhenUnlockedThisDeviceOnly
        let status = SecItemAdd(item as CFDictionary, nil)
        guard status == errSecSuccess else {
            throw DeviceKeyError.Unavailable(reason: "Keychain error \(status)")
        }
    }

    private func load(alias: String) throws -> Data {
        var item = query(alias: alias)
        item[kSecReturnData as String] = true
        item[kSecMatchLimit as String] = kSecMatchLimitOne
        var result: CFTypeRef?
        let status = SecItemCopyMatching(item as CFDictionary, &result)
        if status == errSecItemNotFound {
            throw DeviceKeyError.NotFound
        }
        guard status == errSecSuccess, let handle = result as? Data else {
            throw DeviceKeyError.Unavailable(reason: "Keychain error \(status)")
        }
        return handle
    }
}
