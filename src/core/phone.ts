/** Phone numbers as people read them: "+1 555 123 4567" (libphonenumber-js). No I/O here. */
import { getCountries, getCountryCallingCode, Metadata, parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js";

/** The regions a `defaultRegion` may name (ISO 3166-1 alpha-2, as libphonenumber-js knows them). */
export const PHONE_REGIONS: readonly CountryCode[] = getCountries();

/**
 * Only digits, a leading +, and the separators people write between them. The library also
 * finds a number inside text ("call 555 123 4567 now"): a caller field must be a number as a
 * whole to be rewritten, so nothing around it is lost.
 */
const NUMBER_ONLY = /^\+?[\d\s().\/-]+$/;

/**
 * Whether digits without a + are a whole number of the region, not an extension ("2001") or a
 * local number without its area code ("1234567" in Germany): they start with the region's trunk
 * prefix ("0" in DE and GB) or its international prefix ("00", "011"), or are the ten digits of
 * a North American number. The library alone would read "2001" in DE as +49 2001.
 */
function wholeNationalNumber(digits: string, region: CountryCode): boolean {
  const metadata = new Metadata();
  metadata.selectNumberingPlan(region);
  // The library's typings leave out these two methods of its numbering plan (checked in the tests).
  const plan = metadata.numberingPlan as unknown as { nationalPrefix(): string | undefined; IDDPrefix(): string | undefined };
  const trunk = plan.nationalPrefix();
  const international = plan.IDDPrefix();
  if (international && new RegExp(`^(?:${international})`).test(digits)) return true;
  if (getCountryCallingCode(region) === "1" && digits.length === 10) return true;
  return Boolean(trunk) && digits.startsWith(trunk!) && digits.length >= 7;
}

/**
 * A number in the international form ("+1 555 123 4567", "+49 30 1234567"). A national number
 * ("030 1234567") is read in `region` and must be a valid number there. Whatever does not parse as a possible phone number (an
 * extension "2001", a SIP user, "anonymous", junk) is returned as given.
 */
export function formatPhoneNumber(value: string, region?: CountryCode): string {
  const text = value.trim();
  if (!NUMBER_ONLY.test(text)) return value;
  const international = text.startsWith("+");
  if (!international && !(region && wholeNationalNumber(text.replace(/\D/g, ""), region))) return value;
  const parsed = parsePhoneNumberFromString(text, region);
  // A national number must be a real one of the region ("0000000" is not); a + number need only
  // be possible, so that the fictional 555 numbers of examples and tests read well too.
  if (!parsed || !(international ? parsed.isPossible() : parsed.isValid())) return value;
  return parsed.formatInternational();
}
